"""Runs every keras-rollback benchmark, side by side in one run, and prints one Markdown table.

Each measurement runs in its own process, one after the other (never in parallel, so that
they do not share the cores): the plain PyTorch ResNet-50 loop (`torch_reference.py`), the
Keras ResNet-50 training step, optimizer step and ResNet-101 rollback on every backend
(TensorFlow with and without XLA `jit_compile`, JAX, torch; `keras_training.py --task step`),
`model.fit` with and without `RollbackRefine` and the peak resident memory of a training
process with and without it (`keras_training.py --task fit`, two processes per backend), the
Market-1501- and CUHK03-scale evaluation against torchreid's Cython evaluation, ours on every
backend (`evaluation.py`, its own table below the main one; torchreid's row needs Cython and
$TORCHREID_SOURCE, see that script), the input pipeline (`input_pipeline.py`) and a
two-process data-parallel torch step against one process at the same global batch
(`torch_data_parallel.py`).
Every figure is a median of several repeats; ratios compare figures of this same run.

The default size (images 96x48, batch 8, few repeats) is meant for 2 CPU cores; XLA compiles
of the ResNet-50 train step (TensorFlow + XLA, JAX) take most of its time. On a quiet 2-core
machine it takes 7 minutes of wall clock (8.5 CPU-minutes); on one shared with other jobs (load
average 13-20) it took 42. The table prints the CPU time that its processes used beside the
wall clock: on shared cores the wall-clock figures are stretched by the other jobs and the
CPU-time figures are the stable ones. `--full` is the paper's size (288x144, batch 32, more
repeats) for a GPU machine.

Usage:
    python benchmarks/run_all.py                 # reduced size, prints the table
    python benchmarks/run_all.py --full --output_dir results/gpu
"""

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
MARKET1501_TRAIN_IMAGES = 12936
# torch's OpenMP threads spin while they wait for work. On a machine whose cores other
# processes also use, spinning took 4-7 CPU-s per reduced-size ResNet-50 step instead of
# 0.5 (measured here): passive waiting is set for every process, torch and Keras alike.
OMP_WAIT_POLICY = "PASSIVE"
# The memory rows compare what training keeps alive with and without the callback. glibc
# raises its mmap threshold after freeing a large block, and from then on keeps freed
# blocks of that size resident: on JAX every rollback's transient buffers stayed in the RSS
# (+330 MiB measured, with JAX's live arrays unchanged and a 90 MiB snapshot); a fixed
# threshold (glibc's default 128 KiB, no longer raised) returns them and leaves the live memory.
FIT_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "131072"}

SIZES = {
    "reduced": {
        "height": 96,
        "width": 48,
        "batch_size": 8,
        "warmup_steps": 1,
        "steps": 2,
        "repeats": 3,
        "fit_epochs": 3,
        "fit_steps_per_epoch": 2,
        "fit_repeats": 2,
        "diagnostics": ["--epochs=3", "--steps_per_epoch=4", "--repeats=1", "--every_n_steps=2"],
        "evaluation": ["--repeats", "3"],
        "input_pipeline": ["--images=512", "--train_steps=2", "--batch_size=8"],
    },
    # Not a measurement: a few-second run of every row, to check the script (gpu_check.sh --cpu).
    "tiny": {
        "height": 32,
        "width": 32,
        "batch_size": 2,
        "warmup_steps": 1,
        "steps": 1,
        "repeats": 1,
        "fit_epochs": 2,
        "fit_steps_per_epoch": 1,
        "fit_repeats": 1,
        "evaluation": ["--repeats", "1", "--dim", "64"],
        "input_pipeline": ["--images=16", "--train_steps=1", "--batch_size=2"],
    },
    "full": {
        "height": 288,
        "width": 144,
        "batch_size": 32,
        "warmup_steps": 3,
        "steps": 10,
        "repeats": 5,
        "fit_epochs": 5,
        "fit_steps_per_epoch": 20,
        "fit_repeats": 3,
        "diagnostics": ["--epochs=3", "--steps_per_epoch=50", "--repeats=3", "--every_n_steps=50"],
        "evaluation": ["--repeats", "5"],
        "input_pipeline": ["--images=4096", "--train_steps=10", "--batch_size=32"],
    },
}
CONFIGS = {  # label: (Keras backend, model.compile's jit_compile)
    "tensorflow": ("tensorflow", "false"),
    "tensorflow+xla": ("tensorflow", "true"),
    "jax": ("jax", "auto"),
    "torch": ("torch", "auto"),
}
SECTIONS = (
    "step",
    "fit",
    "diagnostics",
    "precision",
    "data_parallel",
    "transformer_rollback",
    "transformer_step",
    "others",
)
PRECISION_CONFIGS = ("tensorflow", "jax", "torch")


def machine_description():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = "no GPU"
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split("\n")
        gpu = ", ".join(n for n in names if n) or gpu
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {memory:.0f} GiB RAM, {gpu}"


def run_process(name, command, backend, log, timeout, environment=None):
    """Runs one benchmark process; returns (stdout, error message or None)."""
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_WAIT_POLICY=OMP_WAIT_POLICY, **(environment or {})
    )
    if backend:
        env["KERAS_BACKEND"] = backend
    start = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
    try:
        process = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE.parent,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "", f"timed out after {timeout} s"
    log.write(f"===== {name}: {' '.join(command)}\n{process.stdout}\n{process.stderr}\n")
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if process.returncode:
        return (
            process.stdout,
            f"exit code {process.returncode}: {process.stderr.strip().splitlines()[-1:]}",
        )
    return process.stdout, None


def run_json(name, script, arguments, backend, scratch, log, timeout, environment=None):
    output = pathlib.Path(scratch) / f"{name.replace(' ', '_').replace('+', 'plus')}.json"
    _, error = run_process(
        name,
        [sys.executable, str(HERE / script), *arguments, f"--output={output}"],
        backend,
        log,
        timeout,
        environment,
    )
    if error:
        return {"error": error}
    return json.loads(output.read_text())


def run_benchmarks(args):
    size = SIZES["full" if args.full else "tiny" if args.tiny else "reduced"]
    common = [
        f"--height={size['height']}",
        f"--width={size['width']}",
        f"--batch_size={size['batch_size']}",
    ]
    steps = [
        f"--warmup_steps={size['warmup_steps']}",
        f"--steps={size['steps']}",
        f"--repeats={size['repeats']}",
    ]
    start = time.perf_counter()
    results = {
        "size": "full" if args.full else "reduced",
        "image_size": [size["height"], size["width"]],
        "batch_size": size["batch_size"],
        "machine": machine_description(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg(),
    }
    with (
        tempfile.TemporaryDirectory() as scratch,
        open(pathlib.Path(args.output_dir) / "benchmark_log.txt", "w") as log,
    ):
        if "step" in args.sections:
            results["torch_reference"] = run_json(
                "pytorch", "torch_reference.py", [*common, *steps], None, scratch, log, args.timeout
            )
            results["step"] = {}
            for label in args.configs:
                backend, jit = CONFIGS[label]
                rollback = (
                    [] if jit == "true" else ["--rollback"]
                )  # One rollback timing per backend.
                results["step"][label] = run_json(
                    f"step {label}",
                    "keras_training.py",
                    ["--task=step", *common, *steps, f"--jit_compile={jit}", *rollback],
                    backend,
                    scratch,
                    log,
                    args.timeout,
                )
        if "fit" in args.sections:
            results["fit"] = {}
            fit = [
                *common,
                f"--epochs={size['fit_epochs']}",
                f"--steps_per_epoch={size['fit_steps_per_epoch']}",
            ]
            for label in args.fit_configs:
                backend, jit = CONFIGS[label]
                fit_label = [*fit, f"--jit_compile={jit}", "--task=fit"]
                results["fit"][label] = {
                    "without": run_json(
                        f"fit {label} without callback",
                        "keras_training.py",
                        [*fit_label, "--repeats=1"],
                        backend,
                        scratch,
                        log,
                        args.timeout,
                        FIT_ENVIRONMENT,
                    ),
                    "with": run_json(
                        f"fit {label} with callback",
                        "keras_training.py",
                        [*fit_label, f"--repeats={size['fit_repeats']}", "--callback"],
                        backend,
                        scratch,
                        log,
                        args.timeout,
                        FIT_ENVIRONMENT,
                    ),
                }
        if "diagnostics" in args.sections:
            results["diagnostics"] = {
                label: run_json(
                    f"diagnostics {label}",
                    "keras_training.py",
                    [
                        *common,
                        *size["diagnostics"],
                        f"--jit_compile={CONFIGS[label][1]}",
                        "--task=diagnostics",
                    ],
                    CONFIGS[label][0],
                    scratch,
                    log,
                    args.timeout,
                )
                for label in args.fit_configs
            }
        if "precision" in args.sections:
            results["precision"] = {
                label: run_json(
                    f"precision {label}",
                    "keras_training.py",
                    ["--task=precision", *common, *steps, f"--jit_compile={CONFIGS[label][1]}"],
                    CONFIGS[label][0],
                    scratch,
                    log,
                    args.timeout,
                )
                for label in PRECISION_CONFIGS
            }
        if "data_parallel" in args.sections:
            results["data_parallel"] = run_json(
                "data parallel torch",
                "torch_data_parallel.py",
                [*common, *steps[:2]],
                "torch",
                scratch,
                log,
                args.timeout,
            )
        if "transformer_step" in args.sections:
            results["transformer_step"] = {}
            for label in PRECISION_CONFIGS:
                backend, jit = CONFIGS[label]
                results["transformer_step"][label] = run_json(
                    f"transformer step {label}",
                    "keras_training.py",
                    [
                        "--task=step",
                        "--model=vit_base_patch16",
                        *common,
                        *steps,
                        f"--jit_compile={jit}",
                    ],
                    backend,
                    scratch,
                    log,
                    args.timeout,
                )
        if "transformer_rollback" in args.sections:
            results["transformer_rollback"] = {
                backend: run_json(
                    f"transformer rollback {backend}",
                    "keras_training.py",
                    ["--task=transformer_rollback", f"--repeats={max(size['repeats'], 5)}"],
                    backend,
                    scratch,
                    log,
                    args.timeout,
                )
                for backend in PRECISION_CONFIGS
            }
        if "others" in args.sections:
            for name, script, arguments in (
                ("evaluation", "evaluation.py", size["evaluation"]),
                ("input_pipeline", "input_pipeline.py", size["input_pipeline"]),
            ):
                stdout, error = run_process(
                    name,
                    [sys.executable, str(HERE / script), *arguments],
                    args.other_backend,
                    log,
                    args.timeout,
                )
                results[name] = {
                    "backend": args.other_backend,
                    "output": stdout.strip().splitlines(),
                    "error": error,
                }
    results["load_average_at_end"] = os.getloadavg()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    results["cpu_seconds_of_all_processes"] = children.ru_utime + children.ru_stime
    results["wall_seconds"] = time.perf_counter() - start
    return results


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _median_of_later_epochs(runs):
    """Median epoch time over epochs >= 1 of every run (epoch 0 also captures the snapshot)."""
    return statistics.median(t for run in runs for t in run[1:]) if runs else None


def markdown_table(results):
    torch_reference = results.get("torch_reference", {})
    torch_rate = torch_reference.get("images_per_second")
    height, width = results["image_size"]
    lines = [
        (
            f"Machine: {results['machine']}; load average at start/end "
            f"{results['load_average_at_start'][0]:.1f}/{results['load_average_at_end'][0]:.1f}."
        ),
        (
            f"Run: {results.get('wall_seconds', math.nan) / 60:.1f} min wall clock, "
            f"{results.get('cpu_seconds_of_all_processes', math.nan) / 60:.1f} min CPU time of all "
            "benchmark processes."
        ),
        (
            f"Size: {results['size']} (ResNet-50 + 751-way FC at {height}x{width}, batch "
            f"{results['batch_size']}, SGD step included; medians of repeats)."
        ),
        "",
        "| Benchmark | Backend | Keras | Reference | Ratio |",
        "|---|---|---|---|---|",
    ]
    if "error" in torch_reference:
        lines.append(f"| PyTorch reference | torch | | failed: {torch_reference['error']} | |")
    steps = results.get("step", {})
    for label, step in steps.items():
        if "error" in step:
            lines.append(f"| Training step, images/s | {label} | failed: {step['error']} | | |")
            continue
        rate = step["images_per_second"]
        ratio = rate / torch_rate if torch_rate else None
        torch_cpu = torch_reference.get("step_cpu_seconds")
        cpu_ratio = torch_cpu / step["step_cpu_seconds"] if torch_cpu else None
        lines.append(
            f"| Training step, images/s (CPU-s/step) | {label} | {rate:.2f} ({step['step_cpu_seconds']:.2f}) | "
            f"PyTorch eager {_fmt(torch_rate, '.2f')} ({_fmt(torch_cpu, '.2f')}) | {_fmt(ratio, '.2f')}x "
            f"(by CPU time {_fmt(cpu_ratio, '.2f')}x) |"
        )
    lines.extend(_optimizer_rows(steps, "ResNet-50", "sgd"))
    lines.extend(_optimizer_rows(steps, "ResNet-50", "adamw"))
    for label, step in steps.items():
        if "rollback_seconds" in step:
            lines.append(
                f"| Rollback of all ResNet-101 blocks + momentum reset, s (CPU s) ({step['rollback_weights']} "
                f"weights, {step['rollback_megabytes']:.0f} MiB) | {label} | {step['rollback_seconds']:.3f} "
                f"({step['rollback_cpu_seconds']:.3f}) | "
                f"goal < 0.5 | {step['rollback_seconds'] / 0.5:.2f} of goal |"
            )
    for backend, fit in results.get("fit", {}).items():
        without, with_ = fit["without"], fit["with"]
        if "error" in without or "error" in with_:
            lines.append(
                f"| fit with/without RollbackRefine | {backend} | failed: "
                f"{without.get('error') or with_.get('error')} | | |"
            )
            continue
        plain = _median_of_later_epochs(with_["plain_epoch_seconds"])
        refined = _median_of_later_epochs(with_["callback_epoch_seconds"])
        capture = statistics.median(
            r[0] for r in with_["callback_epoch_seconds"]
        ) - statistics.median(r[0] for r in with_["plain_epoch_seconds"])
        noise = (
            max(statistics.pstdev(r[1:]) for r in with_["plain_epoch_seconds"])
            if with_["epochs"] > 2
            else None
        )
        step_seconds = plain / with_["steps_per_epoch"]
        market_epoch = step_seconds * MARKET1501_TRAIN_IMAGES / results["batch_size"]
        lines.append(
            f"| Epoch with a rollback, s ({with_['steps_per_epoch']} steps; periods of 1 epoch) | {backend} | "
            f"with RollbackRefine {refined:.3f} | without {plain:.3f} | difference {refined - plain:+.3f} s = "
            f"{(refined - plain) / plain:+.1%} of this epoch, {(refined - plain) / market_epoch:+.2%} of a "
            f"Market-1501 epoch at this size (noise sd {_fmt(noise, '.3f')} s) |"
        )
        lines.append(f"| Snapshot capture at epoch 0, s | {backend} | {capture:+.3f} | | |")
        lines.append(
            f"| Peak host RSS of a training process (fixed malloc mmap threshold), MiB | {backend} | with RollbackRefine {with_['peak_rss_mib']:.0f} "
            f"| without {without['peak_rss_mib']:.0f} | {with_['peak_rss_mib'] - without['peak_rss_mib']:+.0f} MiB; "
            f"snapshot {with_['snapshot_megabytes']:.0f} MiB, backbone weights "
            f"{with_['backbone_weight_megabytes']:.0f} MiB |"
        )
        if "final_rss_mib" in with_ and "final_rss_mib" in without:
            lines.append(
                f"| Host RSS after training (fixed malloc mmap threshold), MiB | {backend} | with RollbackRefine {with_['final_rss_mib']:.0f} | "
                f"without {without['final_rss_mib']:.0f} | "
                f"{with_['final_rss_mib'] - without['final_rss_mib']:+.0f} MiB |"
            )
    for backend, entry in results.get("diagnostics", {}).items():
        lines.append(_diagnostics_row(backend, entry))
    for label, precision in results.get("precision", {}).items():
        if "error" in precision:
            lines.append(f"| Mixed precision | {label} | failed: {precision['error']} | | |")
            continue
        for policy in ("mixed_bfloat16", "mixed_float16"):
            row, base = precision[policy], precision["float32"]
            lines.append(
                f"| Training step, s (CPU s), {policy} vs float32 | {label} | "
                f"{row['step_seconds']:.3f} ({row['step_cpu_seconds']:.3f}) | "
                f"float32 {base['step_seconds']:.3f} ({base['step_cpu_seconds']:.3f}) | "
                f"{row['step_vs_float32']:.2f}x; rollback restores the float32 weights to "
                f"max |difference| {row['rollback_max_abs_difference']:g} (moved "
                f"{row['trained_max_abs_difference']:.2g} by training) |"
            )
    if "data_parallel" in results:
        lines.append(_data_parallel_row(results["data_parallel"]))
    for backend, entry in results.get("transformer_rollback", {}).items():
        lines.append(_transformer_rollback_row(backend, entry))
    transformer_steps = results.get("transformer_step", {})
    for label, step in transformer_steps.items():
        if "error" in step:
            lines.append(f"| ViT-B/16 training step | {label} | failed: {step['error']} | | |")
            continue
        lines.append(
            f"| ViT-B/16 training step (LayerwiseAdamW), images/s (CPU-s/step) | {label} | "
            f"{step['images_per_second']:.2f} ({step['step_cpu_seconds']:.2f}) | | |"
        )
    lines.extend(_optimizer_rows(transformer_steps, "ViT-B/16", "adamw"))
    evaluation = results.get("evaluation")
    if evaluation and not evaluation["error"]:
        # Its own table (torchreid's Cython vs ours on every backend), below this one.
        lines.append("")
        lines.append("Evaluation (`benchmarks/evaluation.py`, ours on every backend):")
        lines.append("")
        lines += [line for line in evaluation["output"] if line.startswith(("|", "torchreid"))]
        lines.append("")
    for name in ("evaluation", "input_pipeline"):
        if name in results and not (name == "evaluation" and not results[name]["error"]):
            entry = results[name]
            text = (
                "<br>".join(entry["output"][-10:])
                if not entry["error"]
                else f"failed: {entry['error']}"
            )
            lines.append(
                f"| {name.replace('_', ' ').capitalize()} | {entry['backend']} | {text} | | |"
            )
    return "\n".join(lines)


def _data_parallel_row(entry):
    """Two torch processes (torch_data_parallel.py) vs one, at the same global batch."""
    label = "Data-parallel training step on torch, s: two processes vs one, same global batch"
    if "error" in entry:
        return f"| {label} | torch | failed: {entry['error']} | | |"
    two, one = entry["two_process_step_seconds"], entry["one_process_step_seconds"]
    return (
        f"| {label} ({entry['parameters'] / 1e6:.1f} M parameters) | torch | two {two:.3f} "
        f"({entry['two_process_threads_each']} threads each) | one {one:.3f} "
        f"({entry['one_process_threads']} threads) | {two / one:.2f}x; gradient averaging "
        f"{entry['averaging_seconds_per_step']:.3f} s per step, "
        f"{entry['averaging_share_of_step']:.0%} of it ({entry['buckets_per_step']} all-reduces) |"
    )


# Ours against Keras' own optimizer of the same update (`keras_training.py --task step` keys).
_OPTIMIZER_PAIRS = {
    "sgd": ("LayerwiseSGD", "keras SGD"),
    "adamw": ("LayerwiseAdamW", "keras AdamW"),
}


def _optimizer_rows(steps, model_name, optimizer):
    """`Layerwise<optimizer>` against Keras' optimizer, as a share of the training step."""
    ours_name, keras_name = _OPTIMIZER_PAIRS[optimizer]
    lines = []
    for label, step in steps.items():
        if "error" in step or f"layerwise_{optimizer}_step_seconds" not in step:
            continue
        keras_seconds, ours = (
            step[f"keras_{optimizer}_step_seconds"],
            step[f"layerwise_{optimizer}_step_seconds"],
        )
        keras_cpu, ours_cpu = (
            step[f"keras_{optimizer}_step_cpu_seconds"],
            step[f"layerwise_{optimizer}_step_cpu_seconds"],
        )
        lines.append(
            f"| Optimizer step, ms (CPU ms) ({model_name}: {step['optimizer_variables']} variables, "
            f"{step['optimizer_parameters'] / 1e6:.1f} M) | {label} | {ours_name} {ours * 1e3:.0f} "
            f"({ours_cpu * 1e3:.0f}) | {keras_name} {keras_seconds * 1e3:.0f} ({keras_cpu * 1e3:.0f}) | "
            f"{ours / keras_seconds:.2f}x; difference = {(ours - keras_seconds) / step['step_seconds']:+.1%} "
            f"of a training step (by CPU time {(ours_cpu - keras_cpu) / step['step_cpu_seconds']:+.1%}) |"
        )
    return lines


def _transformer_rollback_row(backend, entry):
    """ViT-B/16: every block restored from the host snapshot + LayerwiseAdamW's state reset."""
    label = "ViT-B/16 rollback of every block + AdamW state reset, s (bar: 0.5)"
    if "error" in entry:
        return f"| {label} | {backend} | failed: {entry['error']} | | |"
    return (
        f"| {label} | {backend} | {entry['rollback_seconds']:.3f} | "
        f"{entry['parameters'] / 1e6:.1f} M parameters, {entry['rollback_megabytes']:.0f} MB "
        f"restored, {entry['optimizer_state_megabytes']:.0f} MB of optimizer variables | "
        f"CPU {entry['rollback_cpu_seconds']:.3f} s |"
    )


def _diagnostics_row(backend, entry):
    """BlockDiagnostics' overhead: measured per epoch side by side, and from its parts."""
    label = "BlockDiagnostics overhead, s per training step"
    if "error" in entry:
        return f"| {label} | {backend} | failed: {entry['error']} | | |"
    steps = entry["steps_per_epoch"]
    plain = _median_of_later_epochs(entry["plain_epoch_seconds"]) / steps
    measured = _median_of_later_epochs(entry["callback_epoch_seconds"]) / steps
    every = entry["every_n_steps"] or steps
    # A Market-1501 epoch (404 steps at batch 32) computes the drift once.
    market_steps = MARKET1501_TRAIN_IMAGES / 32
    parts = entry["probe_seconds"] / every + entry["drift_seconds"] / market_steps
    return (
        f"| {label} (gradient norms every {every} steps; {steps} steps per epoch) | {backend} | "
        f"with {measured:.3f} | without {plain:.3f} | measured {(measured - plain) / plain:+.1%} "
        f"of a step; from its parts (probe {entry['probe_seconds']:.3f} s / {every} steps + drift "
        f"{entry['drift_seconds']:.3f} s per Market-1501 epoch) {parts / plain:+.1%}; the probe "
        f"costs {entry['probe_seconds'] / plain:.2f} steps, so <2% needs every_n_steps >= "
        f"{math.ceil(entry['probe_seconds'] / plain / 0.02)} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full", action="store_true", help="Paper size (288x144, batch 32) for a GPU machine."
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="Smallest size, to check that every row runs (figures mean nothing).",
    )
    parser.add_argument(
        "--output_dir", default="benchmark_results", help="Where the JSON, table and log go."
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        help="Backend configurations of the training and optimizer step benchmark.",
    )
    parser.add_argument(
        "--fit_configs",
        nargs="+",
        choices=list(CONFIGS),
        default=None,
        help="Configurations of the fit and memory benchmark. Defaults to the three "
        "backends (TensorFlow without XLA, whose CPU compile takes minutes) and, "
        "with --full, to all.",
    )
    parser.add_argument(
        "--other_backend",
        default="tensorflow",
        help="Backend of the evaluation and input pipeline benchmarks.",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="step: training/optimizer step and rollback; fit: callback overhead and "
        "memory; diagnostics: BlockDiagnostics overhead; precision: mixed-precision step time and "
        "rollback exactness; data_parallel: two torch processes vs one at the same global "
        "batch (torch_data_parallel.py); transformer_rollback: ViT-B/16 rollback + AdamW reset "
        "per backend; transformer_step: ViT-B/16 training step and LayerwiseAdamW vs keras AdamW "
        "per backend; others: evaluation and input pipeline.",
    )
    parser.add_argument("--timeout", type=int, default=1800, help="Seconds per benchmark process.")
    parser.add_argument(
        "--table_from",
        nargs="+",
        default=None,
        help="Only print the table of earlier results JSON files (later ones add to "
        "and override earlier ones, section by section).",
    )
    args = parser.parse_args()
    if args.fit_configs is None:
        args.fit_configs = list(CONFIGS) if args.full else ["tensorflow", "jax", "torch"]
    os.makedirs(args.output_dir, exist_ok=True)
    output = pathlib.Path(args.output_dir)
    if args.table_from:
        results = {}
        for path in args.table_from:
            results.update(json.loads(pathlib.Path(path).read_text()))
    else:
        results = run_benchmarks(args)
        (output / "benchmark_results.json").write_text(json.dumps(results, indent=1))
    table = markdown_table(results)
    results["table"] = table
    (output / "benchmark_results.json").write_text(json.dumps(results, indent=1))
    (output / "benchmark_results.md").write_text(table + "\n")
    print(table)
    print(f"\nWrote {output / 'benchmark_results.json'} and {output / 'benchmark_results.md'}.")


if __name__ == "__main__":
    main()
