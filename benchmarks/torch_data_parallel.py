"""Cost of data parallelism on the torch backend: a two-process step vs one process, same batch.

One process trains a keras.applications ResNet-50 (random weights, FC head, LayerwiseSGD) with
the global batch; then two processes (`MultiProcessJob` over Gloo on 127.0.0.1, or NCCL with
`--gpu`) train it with the same global batch, each on its half, with this library's bucketed
gradient averaging (`keras_rollback/distribute/torch_gradient_averaging.py`). On CPU the cores
are split: the single process uses all of them, each of the two processes half (torch threads).
Printed: the median step time of each, and the time the gradient averaging takes per step
(flatten, all-reduce of ~25 MB buckets, unflatten; it includes waiting for the slower process)
and its share of the two-process step.

    KERAS_BACKEND=torch python benchmarks/torch_data_parallel.py --output=dp.json
"""

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
NUM_CLASSES = 751


def worker(args):
    import torch

    torch.set_num_threads(args.threads)
    import keras
    import numpy as np

    from keras_rollback import LayerwiseSGD
    from keras_rollback.distribute.multi_process_job import MultiProcessJob

    job = MultiProcessJob(args.world, args.rank, args.coordinator or "", join_timeout_s=120)
    job.start()
    with job.scope():
        backbone = keras.applications.ResNet50(
            weights=None, include_top=False, pooling="avg", input_shape=(args.height, args.width, 3)
        )
        inputs = keras.Input((args.height, args.width, 3))
        model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="fc")(backbone(inputs)))
        model.compile(
            optimizer=LayerwiseSGD(learning_rate=0.01, momentum=0.9, nesterov=True),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    steps = args.warmup_steps + args.steps
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * steps, args.height, args.width, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=(args.batch_size * steps,)).astype("int32")
    timer = _timer_class()(model)
    model.fit(
        x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timer]
    )
    later = slice(args.warmup_steps, None)
    result = {
        "rank": args.rank,
        "world": args.world,
        "threads": args.threads,
        "step_seconds": statistics.median(timer.seconds[later]),
        "step_cpu_seconds": statistics.median(timer.cpu_seconds[later]),
        "averaging_seconds": statistics.median(timer.averaging[later]) if args.world > 1 else 0.0,
        "buckets_per_step": timer.buckets,
        "parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
    }
    pathlib.Path(args.output).write_text(json.dumps(result))
    if args.world > 1:
        torch.distributed.destroy_process_group()


def _timer_class():
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self, model):
            super().__init__()
            self.seconds, self.cpu_seconds, self.averaging = [], [], []
            self.buckets = 0
            self._callback = getattr(model, "_keras_rollback_data_parallel", None)

        def _averaged(self):
            averager = self._callback.averager if self._callback else None
            return (averager.seconds, averager.buckets) if averager else (0.0, 0)

        def on_train_batch_begin(self, batch, logs=None):
            self._start = (time.perf_counter(), time.process_time(), *self._averaged())

        def on_train_batch_end(self, batch, logs=None):
            wall, cpu, averaged, buckets = self._start
            now_averaged, now_buckets = self._averaged()
            self.seconds.append(time.perf_counter() - wall)
            self.cpu_seconds.append(time.process_time() - cpu)
            self.averaging.append(now_averaged - averaged)
            self.buckets = now_buckets - buckets

    return StepTimer


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(world, args, scratch):
    threads = max(1, (os.cpu_count() or 2) // world) if not args.gpu else 1
    coordinator = f"127.0.0.1:{_free_port()}" if world > 1 else ""
    env = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    processes, outputs = [], []
    for rank in range(world):
        outputs.append(pathlib.Path(scratch) / f"world{world}-rank{rank}.json")
        command = [
            sys.executable,
            __file__,
            "--worker",
            f"--rank={rank}",
            f"--world={world}",
            f"--coordinator={coordinator}",
            f"--threads={threads}",
            f"--output={outputs[-1]}",
            f"--height={args.height}",
            f"--width={args.width}",
            f"--batch_size={args.batch_size}",
            f"--warmup_steps={args.warmup_steps}",
            f"--steps={args.steps}",
        ]
        processes.append(subprocess.Popen(command, env=env, cwd=HERE.parent))
    for process in processes:
        if process.wait(timeout=args.timeout) != 0:
            for other in processes:
                if other.poll() is None:
                    other.kill()
            raise SystemExit(f"A {world}-process run failed (exit {process.returncode}).")
    return [json.loads(p.read_text()) for p in outputs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", default="", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=8, help="The global batch.")
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="One GPU per process (NCCL).")
    parser.add_argument("--timeout", type=int, default=1200)
    parser.add_argument("--output", default=None, help="JSON file for the results.")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        one = _run(1, args, scratch)[0]
        two = _run(2, args, scratch)
    chief = two[0]
    result = {
        "image_size": [args.height, args.width],
        "global_batch_size": args.batch_size,
        "parameters": one["parameters"],
        "one_process_step_seconds": one["step_seconds"],
        "one_process_threads": one["threads"],
        "two_process_step_seconds": chief["step_seconds"],
        "two_process_step_seconds_per_rank": [r["step_seconds"] for r in two],
        "two_process_threads_each": chief["threads"],
        "averaging_seconds_per_step": chief["averaging_seconds"],
        "averaging_share_of_step": chief["averaging_seconds"] / chief["step_seconds"],
        "buckets_per_step": chief["buckets_per_step"],
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }
    print(
        f"| Data-parallel step on torch, s (ResNet-50 {args.height}x{args.width}, global batch "
        f"{args.batch_size}, {result['parameters'] / 1e6:.1f} M parameters) | torch | "
        f"two processes {result['two_process_step_seconds']:.3f} | one process "
        f"{result['one_process_step_seconds']:.3f} | {result['two_process_step_seconds'] / result['one_process_step_seconds']:.2f}x; "
        f"gradient averaging {result['averaging_seconds_per_step']:.3f} s per step "
        f"({result['averaging_share_of_step']:.0%} of the step, {result['buckets_per_step']} "
        f"all-reduces of <=25 MB) |"
    )
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
