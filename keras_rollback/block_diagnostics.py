"""`BlockDiagnostics`: how far each block moved from its pre-trained weights, and how hard it is pulled."""

import itertools
import os

import keras
import numpy as np

from keras_rollback import backend_utils
from keras_rollback.block_partition import BlockPartition
from keras_rollback.pretrained_snapshot import PretrainedSnapshot


class BlockDiagnostics(keras.callbacks.Callback):
    """Per-block drift from the pre-trained weights and gradient norm, in the epoch logs.

    The paper's premise is that fine-tuning leaves the low blocks close to
    their pre-trained weights because the high blocks converge first. This
    callback measures it. At the end of every epoch it adds, for every block
    `b` of the partition:

    * `drift_<b>`: the relative drift `||w - w0|| / ||w0||` of the block's
      trainable weights (all of them, as one vector) from the pre-trained
      weights `w0`. BatchNorm moving statistics are state, not parameters,
      and are left out.
    * `grad_norm_<b>` (and `grad_norm_<head>`), when `gradient_batch` is
      given: the L2 norm of the gradient of the compiled loss with respect
      to the block's trainable weights, on that fixed batch, at the current
      weights, in training mode (batch statistics, dropout), averaged over
      the samples taken during the epoch. It is the gradient the optimizer
      would see for that batch, before weight decay and momentum. It is
      computed by a separate forward and backward pass
      (`backend_utils.squared_gradient_norms_function`, through
      `model.stateless_call`, so training is unchanged bit for bit), every
      `every_n_steps` training steps, and at least once per epoch (after its
      last step): one pass costs about one training step, so `every_n_steps`
      sets the overhead (about `1 / every_n_steps` of training).

    The values go into the epoch logs, so `CSVLogger`, `TensorBoard` and the
    `History` record them; `self.epoch_records` keeps them too. Works with
    `RollbackRefine` (pass it the same `snapshot` file, and put this
    callback after it) and without it.

    Example:

    ```python
    diagnostics = BlockDiagnostics(partition, gradient_batch=(x[:32], y[:32]))
    history = model.fit(x, y, epochs=10, callbacks=[diagnostics])
    history.history["drift_conv2_x"]
    ```

    Args:
        partition: `BlockPartition` of the model being trained.
        gradient_batch: Optional tuple `(x, y)`, one batch on which gradient
            norms are measured. Defaults to `None` (drift only).
        every_n_steps: Integer > 0 or None. Training steps between gradient
            samples; None samples once per epoch. Defaults to `None`.
        snapshot: Optional `PretrainedSnapshot`, or a path to a snapshot
            file (`RollbackRefine`'s): the reference weights `w0`. Defaults
            to `None`: the weights when training starts at epoch 0.
    """

    def __init__(self, partition, gradient_batch=None, every_n_steps=None, snapshot=None):
        super().__init__()
        if not isinstance(partition, BlockPartition):
            raise ValueError(f"`partition` must be a BlockPartition. Received: {partition!r}")
        if gradient_batch is not None and (
            not isinstance(gradient_batch, (tuple, list)) or len(gradient_batch) != 2
        ):
            raise ValueError(
                "`gradient_batch` must be a tuple (x, y). "
                f"Received: gradient_batch={type(gradient_batch).__name__}"
            )
        if every_n_steps is not None and (
            isinstance(every_n_steps, bool)
            or not isinstance(every_n_steps, int)
            or every_n_steps < 1
        ):
            raise ValueError(
                "`every_n_steps` must be a positive integer or None. "
                f"Received: every_n_steps={every_n_steps!r}"
            )
        if snapshot is not None and not isinstance(
            snapshot, (PretrainedSnapshot, str, os.PathLike)
        ):
            raise ValueError(
                "`snapshot` must be a PretrainedSnapshot or a file path. "
                f"Received: snapshot={snapshot!r}"
            )
        self.partition = partition
        self.gradient_batch = gradient_batch
        self.every_n_steps = every_n_steps
        self._snapshot_arg = snapshot
        self.epoch_records: list[dict] = []
        self._reference: dict = {}

    def on_train_begin(self, logs=None):
        self.partition.check_model(self.model)
        self.epoch_records = []
        self._reference = {}
        self._steps = 0
        self._samples: list = []
        self._norms = None
        if self.gradient_batch is not None:
            self._norms = backend_utils.squared_gradient_norms_function(self.model, self.model.loss)
            # Through numpy: the batch may come from a tf.data pipeline on any backend.
            self._batch = tuple(
                keras.ops.convert_to_tensor(np.asarray(t)) for t in self.gradient_batch
            )

    def on_epoch_begin(self, epoch, logs=None):
        if not self._reference:
            self._reference = self._load_reference(epoch)
        self._samples = []

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self._norms is not None and self.every_n_steps and self._steps % self.every_n_steps == 0:
            self._sample_gradient(self._norms)

    def on_epoch_end(self, epoch, logs=None):
        model = self.model  # On JAX, this syncs the trainer's state first.
        if self._norms is not None and not self._samples:
            self._sample_gradient(self._norms)
        record = {f"drift_{b}": d for b, d in self._drift(model).items()}
        if self._samples:
            for group, norm in zip(self.partition.group_names, np.mean(self._samples, axis=0)):
                record[f"grad_norm_{group}"] = float(norm)
        self.epoch_records.append({"epoch": epoch, **record})
        if logs is not None:
            logs.update(record)

    def _sample_gradient(self, norms):
        model = self.model
        squared = norms(*self._batch)
        by_group = dict.fromkeys(self.partition.group_names, 0.0)
        for variable, value in zip(model.trainable_variables, squared):
            by_group[self.partition.group_of(variable.path)] += value
        self._samples.append([np.sqrt(by_group[g]) for g in self.partition.group_names])

    def _drift(self, model):
        moved = dict.fromkeys(self.partition.block_names, 0.0)
        size = dict.fromkeys(self.partition.block_names, 0.0)
        for weight in self.partition.variables(model, self.partition.block_names):
            if not weight.trainable:
                continue
            block = self.partition.group_of(weight.path)
            reference = self._reference[weight.path].astype(np.float64)
            value = np.asarray(keras.ops.convert_to_numpy(weight), dtype=np.float64)
            moved[block] += float(np.sum(np.square(value - reference)))
            size[block] += float(np.sum(np.square(reference)))
        return {b: float(np.sqrt(moved[b] / size[b])) if size[b] else 0.0 for b in moved}

    def _load_reference(self, epoch):
        snapshot = self._snapshot_arg
        if isinstance(snapshot, PretrainedSnapshot):
            snapshot.check(self.partition)
            return snapshot.arrays
        if snapshot is not None and os.path.exists(snapshot):
            return PretrainedSnapshot.load(snapshot, self.partition).arrays
        if epoch > 0:
            raise ValueError(
                f"Training starts at epoch {epoch} but BlockDiagnostics has no reference "
                "weights: pass `snapshot=` the pre-trained snapshot (or its file) of the run "
                "that started at epoch 0."
            )
        return PretrainedSnapshot.capture(self.model, self.partition).arrays


def plot_block_drift(runs, path, title=None):
    """Draws the drift of every block over epochs, one panel per run, periods marked.

    With gradient norms in the records, a second row of panels draws them.

    Args:
        runs: Mapping from a run's name (e.g. the method) to its epoch logs: a
            list of dicts with `epoch` (0-based), `drift_<block>` and, where
            `RollbackRefine` ran, `period`; optionally `grad_norm_<group>`.
        path: Image file to write (PNG).
        title: Optional figure title. Defaults to `None`.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    runs = {name: sorted(records, key=lambda r: r["epoch"]) for name, records in runs.items()}
    with_gradients = any("grad_norm_" in k for records in runs.values() for k in records[0])
    rows = 2 if with_gradients else 1
    figure, axes = plt.subplots(
        rows,
        len(runs),
        figsize=(4 * len(runs), 3.2 * rows),
        sharey="row",
        squeeze=False,
    )
    for column, (name, records) in enumerate(runs.items()):
        epochs = [r["epoch"] + 1 for r in records]
        for row, prefix, label in (
            (0, "drift_", "||w - w0|| / ||w0||"),
            (1, "grad_norm_", "gradient norm"),
        ):
            if row >= rows:
                continue
            axis = axes[row][column]
            keys = [k for k in records[0] if k.startswith(prefix)]
            for index, key in enumerate(keys):
                values = np.array([r.get(key, np.nan) for r in records], dtype=float)
                axis.plot(epochs, values, marker=".", color=f"C{index}", label=key[len(prefix) :])
            for start in _period_starts(records):
                axis.axvline(start + 0.5, color="grey", linestyle="--", linewidth=0.8)
            axis.set_yscale("log")
            axis.set_xlabel("epoch")
            if column == 0:
                axis.set_ylabel(label)
            if row == 0:
                axis.set_title(name)
            axis.legend(fontsize="x-small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _period_starts(records):
    """Epochs (1-based) after which a new period began."""
    starts = []
    for previous, record in itertools.pairwise(records):
        if "period" in record and record["period"] != previous.get("period"):
            starts.append(previous["epoch"] + 1)
    return starts
