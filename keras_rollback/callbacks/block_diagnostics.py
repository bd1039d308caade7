"""`BlockDiagnostics`: how far each block moved from its pre-trained weights, and how hard it is pulled."""

import os

import keras
import numpy as np

from keras_rollback import _figures
from keras_rollback.block_partition import BlockPartition
from keras_rollback.callbacks.gradient_norms import squared_gradient_norms_function
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
      (`squared_gradient_norms_function`, through
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
            self._norms = squared_gradient_norms_function(self.model, self.model.loss)
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
    """Writes `block_drift_figure(runs, title)` to a PNG file.

    Args:
        runs: Mapping from a run's name to its epoch logs, as for
            `block_drift_figure`.
        path: String or path-like. PNG file to write; parent folders are
            made.
        title: Optional figure title. Defaults to `None`.

    Returns:
        `path`, as a string.
    """
    return _figures.save_png(block_drift_figure(runs, title), path, dpi=110)


def block_drift_figure(runs, title=None):
    """Draws the drift of every block over epochs, one panel per run, periods marked.

    With gradient norms in the records, a second row of panels draws them.
    Each panel has one line per block (or group), in the same colour in
    every panel, and a dashed vertical line where a period begins; each
    row's legend sits right of its last panel, clear of the lines.

    Example:

    ```python
    figure = block_drift_figure({"rollback": diagnostics.epoch_records})
    figure.axes[0].get_lines()[0].get_ydata()  # drift of the first block
    ```

    Args:
        runs: Mapping from a run's name (e.g. the method) to its epoch logs: a
            list of dicts with `epoch` (0-based), `drift_<block>` and, where
            `RollbackRefine` ran, `period`; optionally `grad_norm_<group>`.
        title: Optional figure title. Defaults to `None`.

    Returns:
        A `matplotlib.figure.Figure` drawn by an Agg canvas (pyplot does not
        know it). Its axes are the panels, row by row.
    """
    if not runs or any(not records for records in runs.values()):
        raise ValueError(
            f"Received: runs with {[len(r) for r in runs.values()]} epoch records. "
            "Expected at least one run, each with at least one epoch record."
        )
    runs = {name: sorted(records, key=lambda r: r["epoch"]) for name, records in runs.items()}
    # Every key of every record, in order: a block keeps its colour across panels.
    keys = list(dict.fromkeys(k for records in runs.values() for r in records for k in r))
    rows = [
        (prefix, label, [k for k in keys if k.startswith(prefix)])
        for prefix, label in (("drift_", "||w - w0|| / ||w0||"), ("grad_norm_", "gradient norm"))
    ]
    rows = [row for row in rows if row[2]]
    if not rows:
        raise ValueError(
            f"The epoch records of {list(runs)} have no `drift_<block>` or `grad_norm_<group>` "
            "values: are they BlockDiagnostics' logs?"
        )
    figure = _figures.agg_figure(
        figsize=(4 * len(runs) + 1.5, 3.2 * len(rows)), layout="constrained"
    )
    panels = figure.subplots(len(rows), len(runs), sharey="row", squeeze=False)
    for column, (name, records) in enumerate(runs.items()):
        epochs = [r["epoch"] + 1 for r in records]
        for row, (prefix, label, row_keys) in enumerate(rows):
            axes = panels[row][column]
            for index, key in enumerate(row_keys):
                if not any(key in r for r in records):
                    continue
                values = np.array([r.get(key, np.nan) for r in records], dtype=float)
                axes.plot(epochs, values, marker=".", color=f"C{index}", label=key[len(prefix) :])
            _figures.mark_period_starts(axes, epochs, [r.get("period") for r in records])
            axes.set_yscale("log")
            axes.set_xlabel("epoch")
            if column == 0:
                axes.set_ylabel(label)
            if row == 0:
                axes.set_title(name)
    for row_panels in panels:
        # One legend per row, outside the last panel: every group of the row, once.
        handles: dict = {}  # label -> handle
        for axes in row_panels:
            for handle, group in zip(*axes.get_legend_handles_labels()):
                handles.setdefault(group, handle)
        row_panels[-1].legend(
            handles.values(),
            handles.keys(),
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize="x-small",
        )
    if title:
        figure.suptitle(title)
    return figure
