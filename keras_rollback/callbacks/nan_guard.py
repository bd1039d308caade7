"""`NanGuard`: stops training at the first NaN or infinite loss, naming where to resume from."""

import math

import keras
import numpy as np

from keras_rollback.callbacks.run_checkpoint import RunCheckpoint


class NanGuard(keras.callbacks.Callback):
    """Raises `FloatingPointError` at the first batch whose loss is NaN or infinite, or at
    the end of an epoch that left a weight non-finite.

    Unlike `keras.callbacks.TerminateOnNaN`, which lets the epoch end (so
    that end-of-epoch callbacks may save the diverged weights), training
    stops at once with an error that names the epoch and step (1-based, as
    in Keras' progress bar) and the newest checkpoint of `checkpoint`, the
    state to resume from after fixing the cause (learning rate, data). The
    process exits with an error, so a job scheduler sees the failure.

    A step can also leave non-finite weights behind while its own loss was
    finite (a huge learning rate: the loss is computed before the update).
    The next step's loss shows it, except after an epoch's last step: so at
    the end of each epoch the weights are checked too, and a non-finite one
    is named. Place `NanGuard` before callbacks that evaluate or save at
    epoch ends (`RunCheckpoint`, evaluation), so that they never see such
    weights.

    Reading the loss each batch waits for the step to finish, and the epoch
    end check copies the weights to the host once; both cost little next to
    an epoch of a real model.

    Example:

    ```python
    checkpoint = RunCheckpoint("workdir/checkpoints")
    model.fit(train_ds, epochs=160, callbacks=[NanGuard(checkpoint), checkpoint])
    ```

    Args:
        checkpoint: Optional `RunCheckpoint` of the same `fit`, whose newest
            checkpoint the error names. Defaults to `None`.
    """

    def __init__(self, checkpoint=None):
        super().__init__()
        if checkpoint is not None and not isinstance(checkpoint, RunCheckpoint):
            raise ValueError(
                f"`checkpoint` must be a RunCheckpoint or None. Received: checkpoint={checkpoint!r}"
            )
        self.checkpoint = checkpoint
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        raise FloatingPointError(
            f"Loss is {float(loss)} at epoch {self._epoch + 1}, step {batch + 1}: training "
            f"stopped before saving anything of this epoch. {self._resume_hint()}"
        )

    def on_epoch_end(self, epoch, logs=None):
        model = self.model  # On JAX, reading `self.model` syncs the trained state first.
        for weight in model.weights:
            values = np.asarray(keras.ops.convert_to_numpy(weight))
            if not np.all(np.isfinite(values)):
                raise FloatingPointError(
                    f"Weight {weight.path!r} holds {int(np.sum(~np.isfinite(values)))} "
                    f"non-finite values after the last step of epoch {epoch + 1}, whose losses "
                    "were finite (the update diverged: learning rate too high?). Training "
                    f"stopped before saving or evaluating this epoch. {self._resume_hint()}"
                )

    def _resume_hint(self):
        if self.checkpoint is None:
            resume = "No RunCheckpoint was given."
        elif self.checkpoint.last_saved is None:
            resume = f"No checkpoint was saved yet in {self.checkpoint.directory!r}: a rerun starts over."
        else:
            resume = (
                f"Last good checkpoint: {self.checkpoint.last_saved['weights']!r} "
                f"({self.checkpoint.last_saved['epoch']} finished epochs); a rerun resumes from it."
            )
        return resume
