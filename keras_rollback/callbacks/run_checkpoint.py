"""`RunCheckpoint`: crash-safe per-epoch checkpoints that a rerun of the same command resumes from."""

import json
import math
import os
import re
import time
import warnings

import keras
import numpy as np

from keras_rollback import _atomic_files
from keras_rollback import compat

_FORMAT = "keras_rollback.RunCheckpoint/1"
_MANIFEST = re.compile(r"^epoch-(\d{6})\.json$")
_CHECKPOINT_FILE = re.compile(r"^epoch-(\d{6})\.(json|weights\.h5)$")


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the training state each epoch and resumes from the newest good one.

    At the end of every epoch the model's weights and the optimizer's state
    (momentum, iteration count, `LayerwiseSGD`'s learning-rate multipliers)
    are written with `model.save_weights` to `epoch-NNNNNN.weights.h5` in
    `directory`, followed by a small JSON manifest `epoch-NNNNNN.json` (the
    number of finished epochs, the weights file's size and SHA-256, and the
    states of seeded layers such as `Dropout`, which `save_weights` omits;
    on torch, give such layers an explicit `seed`, since unseeded ones draw
    from torch's global generator). Both
    are written atomically (temp file, flushed, then renamed), the manifest
    last: a checkpoint exists once its manifest does, so a process killed at
    any moment leaves only complete checkpoints behind. The newest `keep`
    are kept.

    When training begins, the newest checkpoint whose weights file matches
    its manifest is loaded and `fit` continues at the epoch after it, as
    with `keras.callbacks.BackupAndRestore`; a missing, truncated or corrupt
    newer one is skipped with a warning naming its path. Rerunning the
    command of a finished run trains no further epoch (`restore` loads the
    newest checkpoint outside `fit`, to evaluate it).

    With `RollbackRefine`, give it `snapshot=<path>` so that the resumed run
    rolls back to the saved pre-trained weights; the period and the group
    learning rates follow from the epoch. The data order is the caller's: a
    resumed run reproduces an uninterrupted one only if epoch `e` sees the
    same batches in both, i.e. if the order is derived from (seed, epoch)
    rather than from how many epochs this process has iterated.

    An epoch whose loss is NaN or infinite is not saved (the previous
    checkpoint stays the newest). Checkpoints are saved only at epoch ends:
    `fit` cannot start in the middle of an epoch, so a mid-epoch checkpoint
    would train some batches of the resumed epoch twice.

    Example:

    ```python
    checkpoint = RunCheckpoint("workdir/checkpoints")
    model.fit(train_ds, epochs=160, callbacks=[
        RollbackRefine(partition, period_epochs=40, snapshot="workdir/pretrained.npz"),
        NanGuard(checkpoint),  # Before the checkpoint: non-finite weights are never saved.
        checkpoint,
    ])
    ```

    Args:
        directory: String or path-like. Folder of the checkpoints, used by
            this run only. Created if needed.
        keep: Integer >= 1. Number of newest checkpoints kept; older ones
            are deleted after each save. Keep 2 or more to survive a
            checkpoint damaged after it was written. Defaults to `2`.
        verbose: 0 or 1. Whether to print a line at each save. Resuming and
            skipping a damaged checkpoint are always reported. Defaults to `0`.
    """

    def __init__(self, directory, keep=2, verbose=0):
        super().__init__()
        if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
            raise ValueError(
                f"`directory` must be a non-empty path. Received: directory={directory!r}"
            )
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"`keep` must be an integer >= 1. Received: keep={keep!r}")
        if verbose not in (0, 1):
            raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
        self.directory = os.fspath(directory)
        self.keep = keep
        self.verbose = verbose
        self.last_saved = None
        self._set_initial_epoch = False

    def newest(self):
        """Returns the newest checkpoint whose weights match its manifest, or None.

        Damaged checkpoints on the way are skipped with a warning naming the
        file. Lets a script learn the epoch it will resume at before `fit`
        (to build a data pipeline that starts there).

        Returns:
            A dict with `epoch` (the number of finished epochs), `weights`
            (the weights file's path) and `manifest` (the manifest's path),
            or None when `directory` holds no usable checkpoint.
        """
        for manifest_path in self._manifests_newest_first():
            try:
                return self._verified(manifest_path)
            except ValueError as e:
                warnings.warn(f"{e} Falling back to the previous checkpoint.", stacklevel=2)
        return None

    def on_train_begin(self, logs=None):
        self.last_saved = None
        self._set_initial_epoch = False
        checkpoint = self.restore(self.model)
        if checkpoint is None:
            return
        compat.set_fit_initial_epoch(self.model, checkpoint["epoch"])
        self._set_initial_epoch = True
        self.last_saved = checkpoint
        epochs = (self.params or {}).get("epochs")
        if epochs is not None and checkpoint["epoch"] >= epochs:
            next_step = f"all {epochs} epochs are done; nothing is left to train."
        else:
            next_step = f"training continues at epoch {checkpoint['epoch'] + 1}."
        compat.print_msg(
            f"RunCheckpoint: resumed from {checkpoint['weights']} after {checkpoint['epoch']} "
            f"finished epochs; {next_step}"
        )

    def restore(self, model):
        """Loads the newest good checkpoint into `model` (weights, optimizer state, seeded
        layers' generator states) outside `fit`.

        Lets a script that finds every epoch already trained (`newest()["epoch"]` equals
        the planned epochs) evaluate the final state without calling `fit`.

        Returns:
            The checkpoint loaded, as returned by `newest()`, or None if there is none
            (the model is left as it was).

        Raises:
            ValueError: if the checkpoint does not fit `model`, naming the file.
        """
        checkpoint = self.newest()
        if checkpoint is None:
            return None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(checkpoint["weights"])
        except Exception as e:
            # The file is intact (its checksum matched): the model differs from the one saved.
            raise ValueError(
                f"Run checkpoint {checkpoint['weights']!r} does not fit model "
                f"{model.name!r} (another architecture or optimizer?): {e}"
            ) from e
        with open(checkpoint["manifest"]) as f:
            random_states = json.load(f).get("random_states", [])
        for variable, state in zip(_random_state_variables(model), random_states):
            variable.assign(np.asarray(state, dtype=variable.dtype))
        return checkpoint

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            warnings.warn(
                f"Epoch {epoch + 1} ended with loss {float(loss)}: not saved; the newest checkpoint "
                f"stays {self.last_saved['weights'] if self.last_saved else None!r}.",
                stacklevel=2,
            )
            return
        self._save(epoch + 1)

    def on_train_end(self, logs=None):
        # `fit` keeps the initial epoch set on the model; a later `fit` on this model must not inherit it.
        if self._set_initial_epoch:
            compat.set_fit_initial_epoch(self.model, None)
            self._set_initial_epoch = False

    def _save(self, finished_epochs):
        name = f"epoch-{finished_epochs:06d}"
        weights_path = os.path.join(self.directory, f"{name}.weights.h5")
        manifest_path = os.path.join(self.directory, f"{name}.json")
        model = self.model
        _atomic_files.atomic_write(
            weights_path,
            model.save_weights,
            suffix=".weights.h5",
            expected_bytes=_state_bytes(model),
        )
        manifest = {
            "format": _FORMAT,
            "epoch": finished_epochs,
            "weights": os.path.basename(weights_path),
            "bytes": os.path.getsize(weights_path),
            "sha256": _atomic_files.sha256_of_file(weights_path),
            "backend": keras.config.backend(),
            # Dropout and other seeded layers: `save_weights` leaves their generator states
            # out, and a resumed run would draw other masks than an uninterrupted one.
            "random_states": [
                np.asarray(keras.ops.convert_to_numpy(v)).tolist()
                for v in _random_state_variables(model)
            ],
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _atomic_files.write_json(manifest_path, manifest, indent=1)
        self.last_saved = {
            "epoch": finished_epochs,
            "weights": weights_path,
            "manifest": manifest_path,
        }
        if self.verbose:
            compat.print_msg(
                f"\nRunCheckpoint: saved {weights_path} ({finished_epochs} finished epochs)."
            )
        self._prune(finished_epochs)

    def _prune(self, finished_epochs):
        """Deletes all but the newest `keep` checkpoints, and files of interrupted writes.

        Checkpoints newer than the one just saved were skipped as damaged at
        train begin (the run went on from an older one): they go too.
        """
        current = [p for p in self._manifests_newest_first() if _epoch_of(p) <= finished_epochs]
        kept_epochs = {_epoch_of(p) for p in current[: self.keep]}
        for name in os.listdir(self.directory):
            match = _CHECKPOINT_FILE.match(name)
            if (match and int(match.group(1)) not in kept_epochs) or _atomic_files.is_temp_file(
                name
            ):
                os.remove(os.path.join(self.directory, name))

    def _manifests_newest_first(self):
        if not os.path.isdir(self.directory):
            return []
        names = sorted((n for n in os.listdir(self.directory) if _MANIFEST.match(n)), reverse=True)
        return [os.path.join(self.directory, n) for n in names]

    def _verified(self, manifest_path):
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
            if manifest.get("format") != _FORMAT:
                raise ValueError(f"unknown format {manifest.get('format')!r}")
            weights_path = os.path.join(self.directory, manifest["weights"])
            expected = (int(manifest["epoch"]), int(manifest["bytes"]), manifest["sha256"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(
                f"Run checkpoint manifest {manifest_path!r} is unreadable: {e}."
            ) from None
        if expected[0] != _epoch_of(manifest_path):
            raise ValueError(
                f"Run checkpoint manifest {manifest_path!r} names epoch {expected[0]}."
            )
        if not os.path.exists(weights_path):
            raise ValueError(f"Run checkpoint {weights_path!r} is missing.")
        found = (
            expected[0],
            os.path.getsize(weights_path),
            _atomic_files.sha256_of_file(weights_path),
        )
        if found != expected:
            raise ValueError(
                f"Run checkpoint {weights_path!r} is truncated or corrupt: {found[1]} bytes, "
                f"SHA-256 {found[2][:12]}..., its manifest says {expected[1]} bytes, {expected[2][:12]}...."
            )
        return {"epoch": expected[0], "weights": weights_path, "manifest": manifest_path}


def _epoch_of(manifest_path):
    match = _MANIFEST.match(os.path.basename(manifest_path))
    if match is None:
        raise ValueError(f"Not a checkpoint manifest name (epoch-NNNNNN.json): {manifest_path}")
    return int(match.group(1))


def _random_state_variables(model):
    """The model's variables that are not weights: seed generator states, in model order."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _state_bytes(model):
    """About the size of a weights file of `model`: its variables and its optimizer's."""
    variables = list(model.variables)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    data = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)
    return data + 1024 * len(variables)  # HDF5 headers and names.
