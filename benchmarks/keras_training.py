"""Keras-side training benchmarks on the active backend (one backend per process).

Tasks (`--task`, each writes one JSON file):
* `step`: ResNet-50 + 751-way FC training step throughput (images/s, `train_on_batch`,
  `LayerwiseSGD`; with `--model=vit_base_patch16`, the ViT-B/16 ReID model of
  `transformer_rollback` at the same image size with `LayerwiseAdamW`), then the optimizer
  step alone, `LayerwiseSGD` against
  `keras.optimizers.SGD` and `LayerwiseAdamW` against `keras.optimizers.AdamW`, on
  the model's trainable variables, compiled the way the
  backend compiles training (a model whose only weights are those variables and whose
  loss is trivially cheap, so the step is the gradient fill plus the optimizer update),
  then the rollback itself: restore every block of ResNet-101 from its host snapshot and
  reset the momentum.
* `precision`: the ResNet-50 training step under each `keras.mixed_precision` policy
  (`float32`, `mixed_bfloat16`, `mixed_float16` with loss scaling), `LayerwiseSGD`, ratios
  to float32; and the rollback under each policy: a reduced ResNet-50 ReID model trained one
  step, every block restored from its pre-trained snapshot, largest difference between the
  float32 master weights and the snapshot (0 when bit-identical).
* `fit`: short `model.fit` runs of ResNet-50 with periods of one epoch, so that every
  epoch after the first starts with a rollback. With `--callback`, fits without and with
  `RollbackRefine` alternate (paired epoch times); without it, only plain fits run. Either
  way the process's peak resident memory is recorded, so that two processes give the peak
  RSS of training without and with the callback (host snapshot included).
* `transformer_rollback`: a ViT-B/16 ReID model (86 M backbone parameters, random weights,
  token mean pooling, 751-way FC) with `LayerwiseAdamW`: restore every block from the host
  snapshot and reset the AdamW state (moments and step counts).

Usage (normally called by `benchmarks/run_all.py`):
    KERAS_BACKEND=jax python benchmarks/keras_training.py --task step --output out.json
"""

import argparse
import json
import pathlib
import resource
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras
import numpy as np
from keras import ops

from keras_rollback import BlockDiagnostics
from keras_rollback import BlockPartition
from keras_rollback import LayerwiseAdamW
from keras_rollback import LayerwiseSGD
from keras_rollback import PretrainedSnapshot
from keras_rollback import RollbackRefine
from keras_rollback.callbacks.gradient_norms import squared_gradient_norms_function
from keras_rollback.models import build_backbone

NUM_CLASSES = 751
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RESNETS = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101}


def reid_resnet(depth, image_size):
    """keras.applications ResNet (random weights), average pooling, FC head named `fc`."""
    backbone = RESNETS[depth](
        weights=None, include_top=False, pooling="avg", input_shape=(*image_size, 3)
    )
    inputs = keras.Input((*image_size, 3))
    outputs = keras.layers.Dense(NUM_CLASSES, name="fc")(backbone(inputs))
    return keras.Model(inputs, outputs, name=f"reid_resnet{depth}")


def reid_vit(image_size):
    """keras-hub ViT-B/16 (random weights), token mean pooling, FC head named `fc`."""
    backbone = build_backbone("vit_base_patch16", input_shape=(*image_size, 3))
    inputs = keras.Input((*image_size, 3))
    features = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="fc")(features))


def layerwise_sgd():
    return LayerwiseSGD(learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)


def random_batch(image_size, batch_size, steps=1, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch_size * steps, *image_size, 3)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=(batch_size * steps,)).astype("int32")
    return images, labels


def timed_runs(function, warmup, repeats, steps):
    """Seconds per call of `function`: median, all runs (each a mean over `steps` calls), median CPU.

    The CPU seconds (all threads of this process) say how much work a call took even when
    other processes share the cores and stretch the wall-clock times.
    """
    for _ in range(warmup):
        function()
    runs, cpu_runs = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(steps):
            function()
        runs.append((time.perf_counter() - start) / steps)
        cpu_runs.append((time.process_time() - cpu_start) / steps)
    return statistics.median(runs), runs, statistics.median(cpu_runs)


class VariableBank(keras.layers.Layer):
    """Holds variables of given shapes; its output is a cheap function of all of them."""

    def __init__(self, shapes, **kwargs):
        super().__init__(**kwargs)
        self.shapes = [tuple(s) for s in shapes]

    def build(self, input_shape):
        self.bank = [
            self.add_weight(shape=s, initializer="zeros", name=f"v{i}")
            for i, s in enumerate(self.shapes)
        ]

    def call(self, inputs):
        total = ops.sum(ops.stack([ops.mean(v) for v in self.bank]))
        return inputs + total


def optimizer_step_seconds(shapes, make_optimizer, jit_compile, warmup, repeats, steps):
    """Seconds per training step of a model whose step is one optimizer update of `shapes`."""
    inputs = keras.Input((1,))
    model = keras.Model(inputs, VariableBank(shapes, name="bank")(inputs))
    model.compile(optimizer=make_optimizer(), loss="mse", jit_compile=jit_compile)
    x, y = np.ones((1, 1), "float32"), np.zeros((1, 1), "float32")
    return timed_runs(lambda: model.train_on_batch(x, y), warmup, repeats, steps)


def step_task(args):
    image_size = (args.height, args.width)
    if args.model == "resnet50":
        model, optimizer = reid_resnet(50, image_size), layerwise_sgd()
    else:  # ViT recipes train with AdamW.
        model, optimizer = reid_vit(image_size), LayerwiseAdamW(3e-4, weight_decay=0.05)
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=args.jit_compile)
    images, labels = random_batch(image_size, args.batch_size)
    step, step_runs, step_cpu = timed_runs(
        lambda: model.train_on_batch(images, labels), args.warmup_steps, args.repeats, args.steps
    )
    result = {
        "model": args.model,
        "images_per_second": args.batch_size / step,
        "images_per_second_runs": [args.batch_size / s for s in step_runs],
        "step_seconds": step,
        "step_cpu_seconds": step_cpu,
    }
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    result["optimizer_variables"] = len(shapes)
    result["optimizer_parameters"] = int(sum(np.prod(s) for s in shapes))
    for name, make in (
        # Keras' weight decay is decoupled, but costs the same extra pass over the weights.
        (
            "keras_sgd",
            lambda: keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
        ),
        ("layerwise_sgd", layerwise_sgd),
        # Both decay decoupled; ours per variable rate, torch's epsilon and per-variable steps.
        ("keras_adamw", lambda: keras.optimizers.AdamW(1e-3, weight_decay=1e-2)),
        ("layerwise_adamw", lambda: LayerwiseAdamW(1e-3, weight_decay=1e-2)),
    ):
        seconds, runs, cpu = optimizer_step_seconds(
            shapes, make, args.jit_compile, 2, args.repeats, 5
        )
        result[f"{name}_step_seconds"] = seconds
        result[f"{name}_step_runs"] = runs
        result[f"{name}_step_cpu_seconds"] = cpu
    if args.rollback:
        model = reid_resnet(101, (64, 32))  # Weights do not depend on the input size.
        result.update(rollback_seconds(model, layerwise_sgd(), args.repeats))
    return result


POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def precision_task(args):
    image_size = (args.height, args.width)
    images, labels = random_batch(image_size, args.batch_size)
    result = {}
    for policy in POLICIES:
        keras.config.set_dtype_policy(policy)
        try:
            model = reid_resnet(50, image_size)
            model.compile(optimizer=layerwise_sgd(), loss=LOSS, jit_compile=args.jit_compile)
            step, runs, cpu = timed_runs(
                lambda model=model: model.train_on_batch(images, labels),
                args.warmup_steps,
                args.repeats,
                args.steps,
            )
            result[policy] = {
                "step_seconds": step,
                "step_runs": runs,
                "step_cpu_seconds": cpu,
                "optimizer": type(model.optimizer).__name__,
                **rollback_difference(image_size),
            }
        finally:
            keras.config.set_dtype_policy("float32")
    for policy in POLICIES:
        result[policy]["step_vs_float32"] = (
            result[policy]["step_seconds"] / result["float32"]["step_seconds"]
        )
    return result


def rollback_difference(image_size):
    """Largest |weight - snapshot| of the blocks after one step, and after their rollback."""
    from keras_rollback.models import build_reid_model
    from keras_rollback.models import keras_hub_resnet

    backbone = keras_hub_resnet(
        "resnet50", input_shape=(*image_size, 3), widths=(64, 16, 16, 16), blocks=(1, 1, 1, 1)
    )
    model = build_reid_model(8, backbone, input_shape=(*image_size, 3), bottleneck_units=16)
    model.compile(optimizer=layerwise_sgd(), loss=LOSS)
    partition = BlockPartition.for_model(model)
    snapshot = PretrainedSnapshot.capture(model, partition)
    images, labels = random_batch(image_size, 4)
    model.train_on_batch(images, labels % 8)

    def largest_difference():
        weights = {w.path: ops.convert_to_numpy(w) for w in model.weights}
        return max(
            float(np.max(np.abs(weights[path] - array))) if array.size else 0.0
            for path, array in snapshot.arrays.items()
        )

    trained = largest_difference()
    snapshot.restore(model, partition, partition.block_names)
    return {
        "trained_max_abs_difference": trained,
        "rollback_max_abs_difference": largest_difference(),
        "weight_dtypes": sorted({str(w.dtype) for w in model.weights}),
    }


def rollback_seconds(model, optimizer, repeats):
    """Restore of every block of `model` from the host snapshot + the optimizer's state reset."""
    model.compile(optimizer=optimizer, loss=LOSS)
    optimizer.build(model.trainable_variables)
    partition = BlockPartition.for_model(model)
    snapshot = PretrainedSnapshot.capture(model, partition)

    def rollback():
        snapshot.restore(model, partition, partition.block_names)
        optimizer.reset_state()
        # Reading one value back waits for backends that assign asynchronously.
        ops.convert_to_numpy(optimizer.variables[-1])

    seconds, runs, cpu = timed_runs(rollback, 1, max(repeats, 5), 1)
    return {
        "rollback_seconds": seconds,
        "rollback_cpu_seconds": cpu,
        "rollback_runs": runs,
        "rollback_weights": len(partition.variables(model, partition.block_names)),
        "rollback_megabytes": sum(a.nbytes for a in snapshot.arrays.values()) / 2**20,
    }


def transformer_rollback_task(args):
    """Issue 23's bar: restore every block of a ViT-B/16 ReID model + reset LayerwiseAdamW."""
    model = reid_vit((224, 224))
    result = rollback_seconds(model, LayerwiseAdamW(3e-4, weight_decay=0.05), args.repeats)
    result["parameters"] = model.count_params()
    result["optimizer_state_megabytes"] = (
        sum(int(np.prod(v.shape)) * 4 for v in model.optimizer.variables) / 2**20
    )
    return result


class EpochClock(keras.callbacks.Callback):
    """Time stamps at each epoch begin and at train end (placed first among callbacks)."""

    def on_train_begin(self, logs=None):
        self.stamps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.stamps.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.stamps.append(time.perf_counter())

    def epoch_seconds(self):
        return list(np.diff(self.stamps))


def fit_task(args):
    image_size = (args.height, args.width)
    model = reid_resnet(50, image_size)
    model.compile(optimizer=layerwise_sgd(), loss=LOSS, jit_compile=args.jit_compile)
    partition = BlockPartition.for_model(model)
    images, labels = random_batch(image_size, args.batch_size, steps=args.steps_per_epoch)
    epochs = min(args.epochs, len(partition.block_names))  # A period per epoch, one rollback each.
    fit_kwargs = {"batch_size": args.batch_size, "epochs": epochs, "shuffle": False, "verbose": 0}
    model.fit(images, labels, batch_size=args.batch_size, epochs=1, verbose=0)  # Compilation.
    plain, with_callback, snapshot_bytes = [], [], 0
    for _ in range(args.repeats):
        clock = EpochClock()
        model.fit(images, labels, callbacks=[clock], **fit_kwargs)
        plain.append(clock.epoch_seconds())
        if args.callback:
            clock = EpochClock()
            refine = RollbackRefine(partition, period_epochs=1, verbose=0)
            model.fit(images, labels, callbacks=[clock, refine], **fit_kwargs)
            with_callback.append(clock.epoch_seconds())
            snapshot_bytes = sum(a.nbytes for a in refine.snapshot.arrays.values())
    result = {
        "epochs": epochs,
        "steps_per_epoch": args.steps_per_epoch,
        # Epoch 0 of a RollbackRefine fit also captures the snapshot; later epochs roll back.
        "plain_epoch_seconds": plain,
        "callback_epoch_seconds": with_callback,
        "snapshot_megabytes": snapshot_bytes / 2**20,
        "backbone_weight_megabytes": sum(
            int(np.prod(w.shape)) * 4 for w in partition.variables(model, partition.block_names)
        )
        / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # Resident memory after training, snapshot still held (the peak may be set earlier,
        # while the model is built and compiled, and hide the snapshot).
        "final_rss_mib": _current_rss_mib(),
    }
    return result


def diagnostics_task(args):
    """Training epochs with and without `BlockDiagnostics`, alternating, in one process; and
    its two costs timed alone: one gradient probe and one drift computation."""
    image_size = (args.height, args.width)
    model = reid_resnet(50, image_size)
    model.compile(optimizer=layerwise_sgd(), loss=LOSS, jit_compile=args.jit_compile)
    partition = BlockPartition.for_model(model)
    images, labels = random_batch(image_size, args.batch_size, steps=args.steps_per_epoch)
    batch = (images[: args.batch_size], labels[: args.batch_size])
    fit_kwargs = {
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "shuffle": False,
        "verbose": 0,
    }
    model.fit(images, labels, batch_size=args.batch_size, epochs=1, verbose=0)  # Compilation.
    plain, with_callback = [], []
    for _ in range(args.repeats):
        clock = EpochClock()
        model.fit(images, labels, callbacks=[clock], **fit_kwargs)
        plain.append(clock.epoch_seconds())
        clock = EpochClock()
        diagnostics = BlockDiagnostics(
            partition, gradient_batch=batch, every_n_steps=args.every_n_steps
        )
        model.fit(images, labels, callbacks=[clock, diagnostics], **fit_kwargs)
        with_callback.append(clock.epoch_seconds())
    probe = squared_gradient_norms_function(model, model.loss)
    probe_batch = tuple(keras.ops.convert_to_tensor(t) for t in batch)
    probe(*probe_batch)  # Compilation (JAX).
    drift_only = BlockDiagnostics(partition)
    drift_only.set_model(model)
    drift_only.on_train_begin()
    drift_only.on_epoch_begin(0)

    def seconds(function):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return {
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "every_n_steps": args.every_n_steps,
        "plain_epoch_seconds": plain,
        "callback_epoch_seconds": with_callback,
        "probe_seconds": seconds(lambda: probe(*probe_batch)),
        "drift_seconds": seconds(lambda: drift_only.on_epoch_end(0, {})),
    }


def _current_rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task",
        choices=["step", "fit", "diagnostics", "precision", "transformer_rollback"],
        required=True,
    )
    parser.add_argument(
        "--model",
        choices=["resnet50", "vit_base_patch16"],
        default="resnet50",
        help="Task `step`: the model whose training and optimizer steps are timed.",
    )
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--width", type=int, default=144)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--jit_compile", default="auto", help="`auto`, `true` or `false` (model.compile)."
    )
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, default=3, help="Timed steps per repeat (task `step`)."
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rollback", action="store_true", help="Also time the ResNet-101 rollback."
    )
    parser.add_argument("--epochs", type=int, default=4, help="Epochs per fit (task `fit`).")
    parser.add_argument("--steps_per_epoch", type=int, default=3, help="Task `fit`.")
    parser.add_argument(
        "--callback", action="store_true", help="Task `fit`: also fit with RollbackRefine."
    )
    parser.add_argument(
        "--every_n_steps", type=int, default=None, help="Task `diagnostics`: gradient sampling."
    )
    parser.add_argument("--output", required=True, help="JSON file for the results.")
    args = parser.parse_args()
    args.jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile.lower()]
    start = time.perf_counter()
    tasks = {
        "step": step_task,
        "fit": fit_task,
        "diagnostics": diagnostics_task,
        "precision": precision_task,
        "transformer_rollback": transformer_rollback_task,
    }
    result = tasks[args.task](args)
    result.update(
        backend=keras.backend.backend(),
        jit_compile=args.jit_compile,
        keras_version=keras.__version__,
        wall_seconds=time.perf_counter() - start,
    )
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
