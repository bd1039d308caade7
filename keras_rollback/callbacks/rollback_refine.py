"""`RollbackRefine`: rolling-back refine-tuning as one Keras callback."""

import dataclasses
import json
import os

import keras
import numpy as np

from keras_rollback import _atomic_files
from keras_rollback import compat
from keras_rollback.block_partition import BlockPartition
from keras_rollback.onednn_bfloat16_error import raise_if_onednn_bfloat16
from keras_rollback.optimizers.layerwise_learning_rates import LayerwiseLearningRates
from keras_rollback.optimizers.layerwise_sgd import LayerwiseSGD
from keras_rollback.pretrained_snapshot import PretrainedSnapshot
from keras_rollback.refine_plan import Period
from keras_rollback.refine_plan import RefinePlan


class RollbackRefine(keras.callbacks.Callback):
    """Rolling-back refine-tuning (Ro et al., AAAI 2019) inside one `model.fit`.

    Training is split into periods. Period 1 fine-tunes the whole network.
    At the first epoch of period `p >= 2` the callback keeps blocks
    `1..p-1`, restores blocks `p..N` (weights and BatchNorm statistics) from
    the pre-trained snapshot, keeps the head, zeroes the optimizer's state
    (momentum; Adam's moments and step counts) as a newly created PyTorch
    optimizer holds it, and restarts the per-group learning rates; inside every period
    the rates decay step-wise. See `RefinePlan` for the schedule and for the
    baselines (plain fine-tuning, "base_cy", FC warm-up) that the same
    callback runs.

    All changes happen in `on_epoch_begin`, where every backend's trainer
    (JAX's included) reads weights and optimizer state afresh, so the first
    step of a period starts from the rolled-back weights.

    The model must be compiled with `LayerwiseSGD` or `LayerwiseAdamW`
    (PyTorch-equivalent SGD and AdamW with per-variable learning-rate
    multipliers), possibly wrapped in a `keras.optimizers.LossScaleOptimizer`
    (mixed precision). The callback owns the
    learning rate: each epoch it sets the optimizer's `learning_rate` to the
    largest group rate and each variable's multiplier to its group's share.
    A block whose learning rate is 0 in a period (the backbone during an FC
    warm-up) is frozen for real: its BatchNorm layers run in inference mode
    (normalising with, and keeping, their moving statistics, like
    torchreid's "fixbase"), so every one of its variables stays
    bit-identical; the callback rebuilds the train function when the set of
    frozen blocks changes, and unfreezes them when training ends.

    It adds `period`, `period_start_epoch` (0-based), `period_end` (1 on a
    period's last epoch) and `lr_<group>` for every group to the epoch logs
    (so `CSVLogger` and `TensorBoard` record them), and keeps one record per
    epoch in `self.epoch_records`.

    With a plateau plan (`RefinePlan(plateau=PlateauRule(...))`) the callback
    reads the monitored quantity from the logs at each epoch end (put a
    callback that adds it before this one) and ends the period there when
    the rule says so; `self.periods` holds the realised periods. The values
    it decided on are saved beside the snapshot file
    (`<snapshot>-plateau.json`), and a resumed run replays them to the same
    period boundaries.

    The pre-trained snapshot is captured when training first begins, unless
    given. For a resumable run, give `snapshot` a file path: the first run
    captures the snapshot and saves it there, later runs (resumed with
    `RunCheckpoint`, `keras.callbacks.BackupAndRestore` or `initial_epoch`)
    load it. Prefer `RunCheckpoint`: `BackupAndRestore` does not save the
    generator state of `Dropout` and other seeded layers, so a run it resumes
    draws other masks and differs from an uninterrupted one. Resuming
    past epoch 0 without a saved snapshot is an error, since the weights
    then are no longer the pre-trained ones.

    Example:

    ```python
    partition = BlockPartition.for_model(model)
    model.compile(optimizer=LayerwiseSGD(), loss="sparse_categorical_crossentropy")
    model.fit(train_ds, epochs=160,
              callbacks=[RollbackRefine(partition, period_epochs=40)])
    ```

    Args:
        partition: `BlockPartition` of the model being trained.
        period_epochs: Integer > 0. Epochs per period. Defaults to `40`.
        periods: Integer > 0 or None. Number of periods; None derives it from
            `fit`'s `epochs`. Defaults to `None`.
        plan: Optional `RefinePlan` for anything beyond the defaults (learning
            rates, kept blocks, base_cy, FC warm-up). When given,
            `period_epochs` and `periods` must be left at their defaults.
        snapshot: Optional `PretrainedSnapshot`, or a path to a `.npz`
            snapshot file that is loaded if it exists and written otherwise.
            Defaults to `None` (captured at train begin, kept in memory).
        verbose: 0 or 1. Whether to print a line at each period start.
            Defaults to `1`.
    """

    def __init__(
        self, partition, period_epochs=40, periods=None, plan=None, snapshot=None, verbose=1
    ):
        super().__init__()
        if plan is None:
            plan = RefinePlan(period_epochs=period_epochs, periods=periods)
        elif not isinstance(plan, RefinePlan):
            raise ValueError(f"`plan` must be a RefinePlan. Received: plan={plan!r}")
        elif period_epochs != 40 or periods is not None:
            raise ValueError(
                "Give either `plan` or `period_epochs`/`periods`, not both. Received: "
                f"period_epochs={period_epochs}, periods={periods}, plan={plan!r}"
            )
        if not isinstance(partition, BlockPartition):
            raise ValueError(f"`partition` must be a BlockPartition. Received: {partition!r}")
        if snapshot is not None and not isinstance(
            snapshot, (PretrainedSnapshot, str, os.PathLike)
        ):
            raise ValueError(
                "`snapshot` must be a PretrainedSnapshot or a file path. "
                f"Received: snapshot={snapshot!r}"
            )
        if verbose not in (0, 1):
            raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
        if plan.periods is not None:
            # Check the plan against the partition now, before anything trains.
            plan.resolve(partition.block_names, partition.head_name)
        self.partition = partition
        self.plan = plan
        self.verbose = verbose
        self._snapshot_path = (
            None
            if isinstance(snapshot, PretrainedSnapshot) or snapshot is None
            else os.fspath(snapshot)
        )
        self.snapshot = snapshot if isinstance(snapshot, PretrainedSnapshot) else None
        self._plateau_path = (
            None
            if self._snapshot_path is None or plan.plateau is None
            else os.path.splitext(self._snapshot_path)[0] + "-plateau.json"
        )
        self.periods: tuple[Period, ...] = ()
        self.epoch_records: list[dict] = []
        self._frozen_layers: list = []

    def on_train_begin(self, logs=None):
        model = self.model
        raise_if_onednn_bfloat16(model.dtype_policy)  # Before a NaN step, not after.
        self.epoch_records = []
        self._frozen_layers = []
        self.periods = self.plan.resolve(
            self.partition.block_names, self.partition.head_name, epochs=self.params.get("epochs")
        )
        self.partition.check_model(model)
        self._max_periods = self.plan.max_periods(self.partition.block_names)
        self._monitored: dict[int, float] = {}
        self._tracker = None if self.plan.plateau is None else self.plan.plateau.tracker()
        optimizer = _layerwise_optimizer(model)
        optimizer.build(model.trainable_variables)
        self._snapshot_loaded = False
        if self.snapshot is None and self._snapshot_path and os.path.exists(self._snapshot_path):
            self.snapshot = PretrainedSnapshot.load(self._snapshot_path, self.partition)
            self._snapshot_loaded = True
        elif self.snapshot is not None:
            self.snapshot.check(self.partition)

    def on_epoch_begin(self, epoch, logs=None):
        model = self.model  # On JAX, this syncs the trainer's state first.
        if self._tracker is not None and not self.epoch_records:
            self._replay_plateaus(self._tracker, epoch)
        period = self._period_at(epoch)
        optimizer = _layerwise_optimizer(model)
        if self.snapshot is None:
            snapshot = self._capture_snapshot(model, epoch)
        else:
            snapshot = self.snapshot
            if epoch == 0 and self._snapshot_loaded:
                self._check_snapshot_is_current(model, snapshot)
        started = epoch == period.start_epoch
        resumed = not self.epoch_records and epoch > 0
        if started and epoch > 0:
            snapshot.restore(model, self.partition, period.rolled_back)
            optimizer.reset_state()
        rates = period.learning_rates(epoch)
        self._set_learning_rates(model, optimizer, rates)
        self._freeze_blocks(model, [b for b in self.partition.block_names if rates[b] == 0])
        self.epoch_records.append(
            {
                "epoch": epoch,
                "period": period.number,
                "rolled_back": period.rolled_back if started and epoch > 0 else (),
                "learning_rates": rates,
            }
        )
        if resumed and not started and self.verbose:
            rate_text = ", ".join(f"{g}={r:g}" for g, r in rates.items())
            compat.print_msg(
                f"\nEpoch {epoch + 1}: RollbackRefine resumed in period {period.number} with the "
                f"pre-trained snapshot {self._snapshot_path or 'given'}. Learning rates: {rate_text}."
            )
        if started and self.verbose:
            name = "FC warm-up" if period.number == 0 else f"period {period.number}"
            reset = (
                "momentum reset" if isinstance(optimizer, LayerwiseSGD) else "optimizer state reset"
            )
            action = (
                f"rolled back {', '.join(period.rolled_back)}; {reset}"
                if period.rolled_back and epoch > 0
                else (reset if epoch > 0 else "fine-tuning from pre-trained weights")
            )
            rate_text = ", ".join(f"{g}={r:g}" for g, r in rates.items())
            compat.print_msg(
                f"\nEpoch {epoch + 1}: RollbackRefine {name}: {action}. Learning rates: {rate_text}."
            )

    def on_epoch_end(self, epoch, logs=None):
        if self._tracker is not None:
            monitor = self.plan.plateau.monitor
            if not logs or monitor not in logs:
                raise ValueError(
                    f"RollbackRefine's PlateauRule monitors {monitor!r}, which is not in the "
                    f"epoch logs {sorted(logs or {})}. A callback that adds it must come before "
                    "RollbackRefine in `callbacks`."
                )
            self._monitored[epoch] = float(logs[monitor])
            self._follow_plateau(self._tracker, epoch, self._monitored[epoch])
            if self._plateau_path:
                self._save_plateau_record()
        if logs is None:
            return
        record = self.epoch_records[-1]
        period = self._period_at(epoch)
        logs["period"] = record["period"]
        logs["period_start_epoch"] = period.start_epoch
        logs["period_end"] = float(epoch == period.end_epoch - 1)
        for group, rate in record["learning_rates"].items():
            logs[f"lr_{group}"] = rate

    def _follow_plateau(self, tracker, epoch, value):
        """Ends the period after `epoch`, or decays its rates, as the plateau rule says."""
        period = self._period_at(epoch)
        if period.number == 0:  # The FC warm-up has a fixed length.
            return
        if tracker.period_start != period.start_epoch:
            tracker.start_period(period.start_epoch)
        action = tracker.update(epoch, value)
        end = self.periods[-1].end_epoch
        if epoch + 1 >= end:
            return
        if action == "rollback" and period.number < self._max_periods:
            ended = dataclasses.replace(period, epochs=epoch + 1 - period.start_epoch)
            started = self.plan.period(
                period.number + 1,
                epoch + 1,
                end - epoch - 1,
                self.partition.block_names,
                self.partition.head_name,
            )
            self.periods = self.periods[:-1] + (ended, started)
        elif action == "decay" and period.decay_at is not None:
            decayed = dataclasses.replace(period, decay_at=(*period.decay_at, epoch + 1))
            self.periods = self.periods[:-1] + (decayed,)

    def _replay_plateaus(self, tracker, epoch):
        """Rebuilds the realised periods of a resumed run from the recorded values."""
        if epoch == 0:
            return
        values = {}
        if self._plateau_path and os.path.exists(self._plateau_path):
            with open(self._plateau_path) as f:
                values = {int(e): v for e, v in json.load(f)["values"].items()}
        missing = [e for e in range(self.plan.warmup_epochs, epoch) if e not in values]
        if missing:
            raise ValueError(
                f"Training resumes at epoch {epoch} with a plateau-triggered plan, but the "
                f"monitored values of epochs {missing[:5]} are not recorded in "
                f"{self._plateau_path!r} (give `snapshot` a file path so they are saved)."
            )
        for past in range(self.plan.warmup_epochs, epoch):
            self._monitored[past] = values[past]
            self._follow_plateau(tracker, past, values[past])

    def _save_plateau_record(self):
        record = {
            "monitor": self.plan.plateau.monitor,
            "values": {str(e): v for e, v in sorted(self._monitored.items())},
            "period_starts": [p.start_epoch for p in self.periods],
        }
        _atomic_files.write_json(self._plateau_path, record, indent=1)

    def on_train_end(self, logs=None):
        self._freeze_blocks(self.model, [])

    def _freeze_blocks(self, model, blocks):
        """Puts the BatchNorm layers of `blocks` (and only those) in inference mode."""
        frozen_ids = {id(layer) for layer in self._frozen_layers}
        wanted = [
            layer
            for layer in _batch_normalization_layers(model)
            # A layer the user made non-trainable stays as it is.
            if (layer.trainable or id(layer) in frozen_ids)
            and self.partition.group_of(layer.moving_mean.path) in blocks
        ]
        wanted_ids = {id(layer) for layer in wanted}
        if wanted_ids == frozen_ids:
            return
        for layer in self._frozen_layers:
            if id(layer) not in wanted_ids:
                layer.trainable = True
        for layer in wanted:
            if id(layer) not in frozen_ids:
                # A non-trainable layer normalises with its moving statistics and never
                # updates them. Its variables stay trainable (at rate 0), so the model's
                # list of trainable variables, which the optimizer and JAX's compiled
                # step are built on, does not change.
                trainable = [v for v in layer.weights if v.trainable]
                layer.trainable = False
                for variable in trainable:
                    variable.trainable = True
        self._frozen_layers = wanted
        # BatchNorm's mode is read when the step is traced (TensorFlow, JAX).
        model.make_train_function(force=True)

    def _period_at(self, epoch):
        for period in self.periods:
            if period.start_epoch <= epoch < period.end_epoch:
                return period
        raise ValueError(
            f"Epoch {epoch} is outside the refine-tuning plan "
            f"({self.periods[-1].end_epoch} epochs)."
        )

    def _set_learning_rates(self, model, optimizer, rates):
        peak = max(rates.values())
        if peak == 0:
            raise ValueError(f"Every group has learning rate 0: {rates}.")
        optimizer.learning_rate = peak
        optimizer.set_learning_rate_multipliers(
            {w.path: rates[self.partition.group_of(w.path)] / peak for w in model.trainable_weights}
        )

    def _check_snapshot_is_current(self, model, snapshot):
        # A fresh start (epoch 0) with an old snapshot file: the workdir belongs to a run
        # from other pre-trained weights, and rollbacks would restore those.
        current = PretrainedSnapshot.capture(model, self.partition).arrays
        changed = sorted(p for p, a in current.items() if not np.array_equal(a, snapshot.arrays[p]))
        if changed:
            raise ValueError(
                f"Training starts at epoch 0 but the pre-trained snapshot {self._snapshot_path!r} "
                f"differs from the model's weights ({len(changed)} weights, e.g. {changed[:3]}): it "
                "was saved by a run from other pre-trained weights. Use another work directory or "
                "delete the file."
            )

    def _capture_snapshot(self, model, epoch):
        # Captured at the first epoch rather than at train begin: another
        # callback (BackupAndRestore) may restore mid-training weights then.
        if epoch > 0:
            raise ValueError(
                f"Training starts at epoch {epoch} but no pre-trained snapshot was "
                "given: the model's weights are no longer the pre-trained ones. Pass "
                "`snapshot=` the snapshot (or file) saved by the run that started at epoch 0."
            )
        snapshot = PretrainedSnapshot.capture(model, self.partition)
        if self._snapshot_path:
            snapshot.save(self._snapshot_path)
        self.snapshot = snapshot
        return snapshot


def _batch_normalization_layers(model):
    """The model's BatchNormalization layers, nested models included."""
    found = []
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            stack.extend(layer.layers)
    return found


def _layerwise_optimizer(model):
    """The model's `LayerwiseSGD` or `LayerwiseAdamW` (inside a `LossScaleOptimizer` too)."""
    optimizer = getattr(model, "optimizer", None)
    # A mixed-precision LossScaleOptimizer wraps the real one.
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(optimizer, LayerwiseLearningRates):
        raise ValueError(
            "RollbackRefine needs the model compiled with keras_rollback.LayerwiseSGD or "
            "keras_rollback.LayerwiseAdamW (PyTorch-equivalent SGD or AdamW with per-group "
            "learning rates, which reset as a new PyTorch optimizer at each period). Received: "
            f"optimizer={type(optimizer).__name__ if optimizer is not None else None}"
        )
    return optimizer
