"""`NanGuard`: stops training at the first NaN or infinite loss, naming where to resume from."""

import math

import keras

from keras_rollback.run_checkpoint import RunCheckpoint


class NanGuard(keras.callbacks.Callback):
    """Raises `FloatingPointError` at the first batch whose loss is NaN or infinite.

    Unlike `keras.callbacks.TerminateOnNaN`, which lets the epoch end (so
    that end-of-epoch callbacks may save the diverged weights), training
    stops at once with an error that names the epoch and step (1-based, as
    in Keras' progress bar) and the newest checkpoint of `checkpoint`, the
    state to resume from after fixing the cause (learning rate, data). The
    process exits with an error, so a job scheduler sees the failure.

    Reading the loss each batch waits for the step to finish; this costs
    little next to a step of a real model.

    Example:

    ```python
    checkpoint = RunCheckpoint("workdir/checkpoints")
    model.fit(train_ds, epochs=160, callbacks=[checkpoint, NanGuard(checkpoint)])
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
        if self.checkpoint is None:
            resume = "No RunCheckpoint was given."
        elif self.checkpoint.last_saved is None:
            resume = f"No checkpoint was saved yet in {self.checkpoint.directory!r}: a rerun starts over."
        else:
            resume = (
                f"Last good checkpoint: {self.checkpoint.last_saved['weights']!r} "
                f"({self.checkpoint.last_saved['epoch']} finished epochs); a rerun resumes from it."
            )
        raise FloatingPointError(
            f"Loss is {float(loss)} at epoch {self._epoch + 1}, step {batch + 1}: training "
            f"stopped before saving anything of this epoch. {resume}"
        )
