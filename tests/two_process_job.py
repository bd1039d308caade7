"""One process of a two-process RollbackRefine job, run by `distribute_multi_process_job_test.py`.

    python tests/two_process_job.py WORKDIR NUM_PROCESSES PROCESS_ID COORDINATOR
        [--kill-at-epoch=E] [--single-reference]

Joins the job through `MultiProcessJob` (MultiWorkerMirroredStrategy on TensorFlow,
jax.distributed + DataParallel on JAX, torch.distributed (Gloo) + this library's bucketed gradient
averaging on torch), trains a tiny CNN with `RollbackRefine` +
`LayerwiseSGD` on a tf.data pipeline of global batches (each process feeds its share), checkpoints
with `RunCheckpoint` (the chief into WORKDIR, the other process into its private folder), then
extracts evaluation features. It writes `result-<process>.npz` into WORKDIR: the weights and
momenta this process holds locally before the first step of each period >= 2, the final weights,
momenta, loss history and features. With `--kill-at-epoch=E`, process 1 SIGKILLs itself after the
first step of epoch E (mid-period). With `--single-reference` the chief also trains the same model
alone with the same global batch (no scope, one process) and saves it as `single-reference.npz`.

On torch the blocks normalise with LayerNormalization instead of BatchNormalization: a torch
process normalises its share of the batch with its own batch statistics (as DDP without
SyncBatchNorm), so with BatchNorm two processes would not compute what one process computes with
the global batch; LayerNormalization is per sample, which makes the comparison exact up to
float32 round-off.
"""

import argparse
import os
import pathlib
import shutil
import signal
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# Importing runs no computation: the job can still be joined afterwards.
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from testing_models import tiny_data  # noqa: E402

from keras_rollback import BlockPartition  # noqa: E402
from keras_rollback import LayerwiseSGD  # noqa: E402
from keras_rollback import RollbackRefine  # noqa: E402
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint  # noqa: E402
from keras_rollback.distribute.multi_process_job import MultiProcessJob  # noqa: E402
from keras_rollback.evaluation import extract_features  # noqa: E402

GLOBAL_BATCH = 8
SAMPLES = 16  # Two global batches per epoch.
EPOCHS = 6
PERIOD_EPOCHS = 2  # Rollbacks at epochs 2 and 4.


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("num_processes", type=int)
    parser.add_argument("process_id", type=int)
    parser.add_argument("coordinator")
    parser.add_argument("--kill-at-epoch", type=int, default=None)
    parser.add_argument("--single-reference", action="store_true")
    args = parser.parse_args()

    job = MultiProcessJob(args.num_processes, args.process_id, args.coordinator)
    directory = job.process_directory(args.workdir)
    if not job.is_chief:
        _copy_chief_checkpoints(args.workdir, directory)
    job.start()

    x, y = tiny_data(n=SAMPLES)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH, drop_remainder=True)
    eval_dataset = tf.data.Dataset.from_tensor_slices(
        {
            "image": x,
            "pid": y,
            "camid": np.zeros_like(y),
            "path": [f"{i}.jpg" for i in range(len(y))],
        }
    ).batch(5)  # Partial last batch on purpose.

    with job.scope():
        model, partition = _build(synchronized=keras.backend.backend() == "tensorflow")
    initial = [np.array(w) for w in model.get_weights()]

    probe = _Probe()
    callbacks = [
        RollbackRefine(
            partition,
            period_epochs=PERIOD_EPOCHS,
            snapshot=os.path.join(directory, "pretrained.npz"),
            verbose=0,
        ),
        probe,
        RunCheckpoint(os.path.join(directory, "checkpoints")),
    ]
    if args.kill_at_epoch is not None and args.process_id == 1:
        callbacks.append(_KillAfterFirstStep(args.kill_at_epoch))
    # The model keeps the strategy it was built in; the feature model, built outside the
    # scope, computes on this process alone (on TensorFlow, a model built in the scope would
    # take each process's batch as its share of a larger one).
    history = model.fit(dataset, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    features = extract_features(_feature_model(model), eval_dataset, verbose=0)
    final = {
        "initial": initial,
        "final_weights": [keras.ops.convert_to_numpy(w) for w in model.weights],
        "final_momenta": [keras.ops.convert_to_numpy(m) for m in model.optimizer.momentums],
        "loss": np.array(history.history["loss"]),
        "features": features["features"],
        "paths": [w.path for w in model.weights],
        "rolled_back_paths": [
            p for b in ("B2", "B3", "B4") for p in partition.paths(b)
        ],  # Rolled back at epoch 2; B3 and B4 again at epoch 4.
    }
    _save(os.path.join(args.workdir, f"result-{args.process_id}.npz"), final, probe.seen)

    if args.single_reference and job.is_chief:
        _train_single_reference(x, y, initial, args.workdir)
    if not job.is_chief:
        shutil.rmtree(directory, ignore_errors=True)
    job.close()


def _build(synchronized):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for block in range(1, 5):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"b{block}_conv")(x)
        if keras.backend.backend() == "torch":
            # Per sample: a torch process's BatchNorm would see only its share (module docstring).
            x = keras.layers.LayerNormalization(name=f"b{block}_norm")(x)
        else:
            # Batch statistics over the global batch, as on one process (a TensorFlow replica
            # sees only its share; a JAX DataParallel step is one program over the global batch).
            x = keras.layers.BatchNormalization(synchronized=synchronized, name=f"b{block}_bn")(x)
        x = keras.layers.ReLU(name=f"b{block}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x), name="tiny_cnn")
    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9, nesterov=True, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    blocks = {f"B{i}": f"b{i}_" for i in range(1, 5)}
    return model, BlockPartition(model, blocks=blocks, head="fc/")


def _feature_model(model):
    return keras.Model(model.input, model.get_layer("pool").output)


class _Probe(keras.callbacks.Callback):
    """Before the first step of each period >= 2: every local copy of every weight and momentum."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0 and self.epoch > 0 and self.epoch % PERIOD_EPOCHS == 0:
            model = self.model  # On JAX, syncs the trainer's state into the variables.
            self.seen[self.epoch] = {
                "weights": [_local_copies(w) for w in model.weights],
                "momenta": [_local_copies(m) for m in model.optimizer.momentums],
            }


def _local_copies(variable):
    """The copies of `variable` that this process holds, as numpy arrays."""
    value = variable.value
    if keras.backend.backend() == "torch":
        return [keras.ops.convert_to_numpy(value)]  # One copy per process.
    if keras.backend.backend() == "jax":
        # Replicated over the processes' devices; numpy reads this process's copy (the
        # `addressable_shards` of an array that Keras `device_put` there cannot be listed).
        return [np.asarray(value)]
    strategy = tf.distribute.get_strategy()
    return [np.asarray(v) for v in strategy.experimental_local_results(value)]


class _KillAfterFirstStep(keras.callbacks.Callback):
    """SIGKILLs this process after the first step of `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.kill_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.kill_epoch and batch == 0:
            os.kill(os.getpid(), signal.SIGKILL)


def _copy_chief_checkpoints(workdir, directory):
    """A non-chief process resumes from the chief's snapshot and checkpoints."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for name in ("pretrained.npz", "checkpoints"):
        source = os.path.join(workdir, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(directory, name))
        elif os.path.exists(source):
            shutil.copy2(source, directory)


def _train_single_reference(x, y, initial, workdir):
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(None)  # This process's devices only.
    model, partition = _build(synchronized=False)
    model.set_weights(initial)
    history = model.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[RollbackRefine(partition, period_epochs=PERIOD_EPOCHS, verbose=0)],
    )
    eval_dataset = [
        {
            "image": x[i : i + 5],
            "pid": y[i : i + 5],
            "camid": 0 * y[i : i + 5],
            "path": [f"{j}.jpg" for j in range(i, min(i + 5, len(x)))],
        }
        for i in range(0, len(x), 5)
    ]
    features = extract_features(_feature_model(model), eval_dataset, verbose=0)
    np.savez(
        os.path.join(workdir, "single-reference.npz"),
        loss=np.array(history.history["loss"]),
        features=features["features"],
        **{f"weight_{i}": keras.ops.convert_to_numpy(w) for i, w in enumerate(model.weights)},
        **{
            f"momentum_{i}": keras.ops.convert_to_numpy(m)
            for i, m in enumerate(model.optimizer.momentums)
        },
    )


def _save(path, final, seen):
    arrays = {
        "loss": final["loss"],
        "features": final["features"],
        "paths": np.array(final["paths"]),
        "rolled_back_paths": np.array(final["rolled_back_paths"]),
        "probed_epochs": np.array(sorted(seen)),
    }
    for i, w in enumerate(final["initial"]):
        arrays[f"initial_{i}"] = w
    for i, w in enumerate(final["final_weights"]):
        arrays[f"weight_{i}"] = w
    for i, m in enumerate(final["final_momenta"]):
        arrays[f"momentum_{i}"] = m
    for epoch, state in seen.items():
        for kind in ("weights", "momenta"):
            for i, copies in enumerate(state[kind]):
                arrays[f"probe_{epoch}_{kind}_{i}"] = np.stack(copies)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
