"""A tiny resumable RollbackRefine run that SIGKILLs itself at a chosen point.

Usage: `python tests/fault_injection_job.py WORKDIR` with the backend in
`KERAS_BACKEND`. Rerunning the same command resumes the run from WORKDIR
and, once it has finished, writes the final weights to WORKDIR/final.npz.

Checkpoints are `RunCheckpoint`'s, or `keras.callbacks.BackupAndRestore`'s
with `FAULT_CHECKPOINTER=backup_and_restore`.

`FAULT_KILL_POINTS` (comma-separated, in the order the run reaches them)
names where to kill the process; each run dies at the first point not yet
used and marks it used in WORKDIR/kills, so rerunning the command until it
exits with 0 passes every point. Points:

* `snapshot_write`: the pre-trained snapshot's temp file is written, not yet renamed;
* `train_batch:E:S`: after step S of epoch E (0-based);
* `eval_batch:E:S`: after validation step S at the end of epoch E;
* `after_rollback:E`: epoch E's rollback done, before its first step;
* `epoch_end:E`: after epoch E's checkpoint is saved;
* `checkpoint_write:E`: epoch E's weights file written to its temp file, not renamed;
* `manifest_write:E`: epoch E's weights file renamed, its manifest not yet;
* `corrupt_newest:E`: after epoch E's checkpoint is saved, flip bytes in it, then die.
"""

import os
import signal
import sys

import keras
import numpy as np
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import LayerwiseSGD
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine
from keras_rollback.callbacks.nan_guard import NanGuard
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint

EPOCHS = 6
PLAN = RefinePlan(period_epochs=2, periods=3, decay_epochs=1)
BATCH_SIZE = 8
DATA_SEED = 7


class EpochOrderedBatches(keras.utils.PyDataset):
    """Batches in an order drawn from (seed, epoch) alone, so a resumed run sees what an uninterrupted one saw.

    Keras re-iterates the data each epoch; a shuffle seeded once per `fit`
    (tf.data's `shuffle(seed=...)`) restarts its sequence in the resumed
    process, which then trains epoch E on epoch 0's order, and `fit`'s own
    `shuffle=True` permutes a PyDataset's batches with the global RNG.
    """

    def __init__(self, x, y, batch_size, seed, nan_at=None):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.nan_at = nan_at
        self.epoch = 0

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, index):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))
        batch = order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.x[batch]
        if self.nan_at == (self.epoch, index):
            x = np.full_like(x, np.nan)
        return x, self.y[batch]


class FollowEpoch(keras.callbacks.Callback):
    """Tells the data which epoch `fit` is at (the first one included, after a resume)."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.epoch = epoch


def compiled_model():
    model = tiny_cnn()
    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9, nesterov=True, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def train_data(nan_at=None):
    x, y = tiny_data(n=32, seed=1)
    return EpochOrderedBatches(x, y, BATCH_SIZE, DATA_SEED, nan_at=nan_at)


class Killer(keras.callbacks.Callback):
    """SIGKILLs the process at the active kill point (placed after RollbackRefine and RunCheckpoint)."""

    def __init__(self, point, die, checkpoint):
        super().__init__()
        kind, *numbers = point.split(":")
        self.kind, self.numbers = kind, tuple(int(n) for n in numbers)
        self.die, self.checkpoint = die, checkpoint
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.kind == "after_rollback" and self.numbers == (self.epoch,) and batch == 0:
            self.die()

    def on_train_batch_end(self, batch, logs=None):
        if self.kind == "train_batch" and self.numbers == (self.epoch, batch):
            self.die()

    def on_test_batch_end(self, batch, logs=None):
        if self.kind == "eval_batch" and self.numbers == (self.epoch, batch):
            self.die()

    def on_epoch_end(self, epoch, logs=None):
        if self.kind == "epoch_end" and self.numbers == (epoch,):
            self.die()
        if self.kind == "corrupt_newest" and self.numbers == (epoch,):
            with open(self.checkpoint.last_saved["weights"], "r+b") as f:
                f.seek(os.path.getsize(self.checkpoint.last_saved["weights"]) // 2)
                f.write(b"\xff" * 64)
            self.die()


def active_kill_point(workdir):
    points = [p for p in os.environ.get("FAULT_KILL_POINTS", "").split(",") if p]
    used = (
        set(os.listdir(os.path.join(workdir, "kills")))
        if os.path.isdir(os.path.join(workdir, "kills"))
        else set()
    )
    return next((p for p in points if p.replace(":", "_") not in used), None)


def make_die(workdir, point):
    def die():
        os.makedirs(os.path.join(workdir, "kills"), exist_ok=True)
        with open(os.path.join(workdir, "kills", point.replace(":", "_")), "w") as f:
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    return die


def kill_inside_writes(point, die):
    """Kills the process between an atomic write's temp file and its rename."""
    kind, *numbers = point.split(":")
    targets = {
        "snapshot_write": "pretrained.npz",
        "checkpoint_write": f"epoch-{int(numbers[0]) + 1:06d}.weights.h5" if numbers else None,
        "manifest_write": f"epoch-{int(numbers[0]) + 1:06d}.json" if numbers else None,
    }
    target = targets.get(kind)
    if target is None:
        return
    real_replace = os.replace

    def replace(src, dst):
        if os.fspath(dst).endswith(target):
            die()
        real_replace(src, dst)

    os.replace = replace


def run(workdir):
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    model = compiled_model()
    data = train_data()
    if os.environ.get("FAULT_CHECKPOINTER") == "backup_and_restore":
        checkpoint = None
        extra = [
            FollowEpoch(data),
            keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup")),
        ]
    else:
        checkpoint = RunCheckpoint(os.path.join(workdir, "checkpoints"), keep=2)
        extra = [FollowEpoch(data), checkpoint, NanGuard(checkpoint)]
    point = active_kill_point(workdir)
    if point:
        die = make_die(workdir, point)
        kill_inside_writes(point, die)
        extra.append(Killer(point, die, checkpoint))
    refine = RollbackRefine(
        tiny_partition(model),
        plan=PLAN,
        snapshot=os.path.join(workdir, "pretrained.npz"),
        verbose=0,
    )
    x_val, y_val = tiny_data(n=16, seed=2)
    model.fit(
        data,
        epochs=EPOCHS,
        validation_data=(x_val, y_val),
        validation_batch_size=BATCH_SIZE,
        callbacks=[refine, *extra],
        verbose=0,
        shuffle=False,  # fit would shuffle the batch order with this process's global RNG.
    )
    np.savez(
        os.path.join(workdir, "final.npz"),
        **{p.replace("/", "|"): w for p, w in weights_by_path(model).items()},
    )


if __name__ == "__main__":
    run(sys.argv[1])
