"""The fault table: SIGKILL the experiment runner at every kill point (and at random times),
rerun the same command until it finishes, and compare with an uninterrupted run.

    nice -n 5 python tools/fault_table.py --backends=jax,tensorflow --out=/tmp/fault_table

Runs `tests/experiment_fault_job.py` (= `python -m experiments.main` plus kill points) on the
smoke config: 2 methods x 2 periods of 1 epoch (period 1 shared), a synthetic dataset and
a pre-trained synthetic source. For every backend: one uninterrupted reference run, chains of runs that
each die at the next kill point of their chain, and chains killed at random times. A chain
is "identical" when its `results.json` (minus wall times) and the weights of every method's
final checkpoint equal the reference's bit for bit; "data lost or mixed" counts chains that
ended in any other error, or finished with other results. Prints the table (markdown) and
writes it to `<out>/fault_table.md`.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "tests", "experiment_fault_job.py")
CONFIG = ["--config=experiments/configs/smoke.py"]
# Images the smoke config writes: 56 in the synthetic dataset, then the source dataset's.
TARGET_IMAGES = 56
KILL_CHAINS = {
    "dataset_and_pretraining": [
        "write:config.json",
        "image:20",
        "image:45",
        "write:.synthetic-market1501.tmp-*/synthetic_market1501.json",
        "rename:synthetic-market1501",
        f"image:{TARGET_IMAGES + 10}",
        "train_batch:pretrain:0:0",
        "write:pretrained-source/*.weights.h5",
        "write:pretrained-source/*.weights.h5.json",
    ],
    # Period 1 is shared (experiments/shared_period_one.py): trained once in fine_tune/,
    # then each method is branched from its checkpoint and trains period 2.
    "shared_period_one": [
        "write:fine_tune/pretrained.npz",
        "train_batch:fine_tune:0:0",
        "eval:fine_tune:0",
        "line:fine_tune:0",
        "write:fine_tune/checkpoints/epoch-000001.weights.h5",
        "write:fine_tune/checkpoints/epoch-000001.json",
        "epoch_end:fine_tune:0",  # After the last checkpoint, before `finished.json`.
        "pictures:fine_tune",
        "write:fine_tune/finished.json",
    ],
    "branch_and_first_method": [
        "write:rollback/pretrained.npz",
        "write:rollback/epochs.jsonl",
        "write:rollback/checkpoints/epoch-000001.weights.h5",
        "write:rollback/checkpoints/epoch-000001.json",  # The branch's last copy.
        "after_rollback:rollback:1",
        "train_batch:rollback:1:1",
        "eval:rollback:1",
        "epoch_end:rollback:1",  # After the last checkpoint, before `finished.json`.
        "pictures:rollback",
        "write:rollback/finished.json",
    ],
    "second_method_and_reports": [
        "write:base_cy/checkpoints/epoch-000001.json",
        "fit_begin:base_cy",
        "train_batch:base_cy:1:0",
        "write:base_cy/checkpoints/epoch-000002.weights.h5",
        "line:base_cy:1",
        "epoch_end:base_cy:1",
        "write:base_cy/finished.json",
        "write:results.csv",
        "write:results.json",
        "write:curves.png",
        "write:comparison.md",
    ],
}
METHODS = ("fine_tune", "rollback", "base_cy")  # fine_tune: the shared period 1.
# Result columns that differ between runs without being results: time, the work dir's path.
RUN_SPECIFIC = ("wall_time", "weights_file")


def run_once(workdir, backend, kill_points=(), kill_after=None):
    """One run of the job; returns (exit code, seconds, log text)."""
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        FAULT_KILL_POINTS=",".join(kill_points),
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=ROOT,
    )
    log_path = f"{workdir}.log"
    started = time.time()
    with open(log_path, "a") as log:
        log.write(f"\n===== run at {time.strftime('%H:%M:%S')} kill_after={kill_after}\n")
        log.flush()
        process = subprocess.Popen(
            [sys.executable, JOB, f"--workdir={workdir}", *CONFIG],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            code = process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    with open(log_path) as log:
        text = log.read()
    return code, time.time() - started, text


def outcome(workdir):
    """What a finished run left: result rows without wall times and paths, final weights
    per method."""
    with open(os.path.join(workdir, "results.json")) as f:
        rows = [{k: v for k, v in row.items() if k not in RUN_SPECIFIC} for row in json.load(f)]
    import h5py

    weights = {}
    for method in METHODS:
        folder = os.path.join(workdir, method, "checkpoints")
        newest = sorted(n for n in os.listdir(folder) if n.endswith(".weights.h5"))[-1]
        with h5py.File(os.path.join(folder, newest), "r") as f:
            f.visititems(
                lambda name, item, method=method: (
                    weights.__setitem__(f"{method}/{name}", np.array(item))
                    if isinstance(item, h5py.Dataset)
                    else None
                )
            )
    return rows, weights


def same(a, b):
    rows_a, weights_a = a
    rows_b, weights_b = b
    return (
        rows_a == rows_b
        and weights_a.keys() == weights_b.keys()
        and all(np.array_equal(weights_a[k], weights_b[k]) for k in weights_a)
    )


def run_chain(workdir, backend, points=(), random_kills=0, rng=None, window=150, max_runs=40):
    """Reruns until exit 0; returns (exit codes, error text or None). With `rng`, the first
    `random_kills` runs are killed after a random time in [5, window] seconds (if still
    running then)."""
    codes = []
    for _ in range(max_runs):
        kill_after = (
            rng.uniform(5, window) if rng is not None and len(codes) < random_kills else None
        )
        code, _, text = run_once(workdir, backend, points, kill_after)
        codes.append(code)
        if code == 0:
            return codes, None
        if code != -9:
            return codes, text[-3000:]
    return codes, "did not finish"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow")
    parser.add_argument("--out", default="/tmp/fault_table")
    parser.add_argument("--random_chains", type=int, default=2)
    parser.add_argument("--random_kills", type=int, default=3)
    parser.add_argument("--random_window", type=float, default=150, help="seconds")
    parser.add_argument("--random_first_seed", type=int, default=0)
    parser.add_argument("--chains", default=",".join(KILL_CHAINS), help="'' for none")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = []
    for backend in args.backends.split(","):
        base = os.path.join(args.out, backend)
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        reference_dir = os.path.join(base, "reference")
        code, seconds, text = run_once(reference_dir, backend)
        if code != 0:
            raise SystemExit(f"{backend}: the reference run failed:\n{text[-3000:]}")
        reference = outcome(reference_dir)
        print(f"{backend}: reference run {seconds:.0f} s", flush=True)
        for chain in filter(None, args.chains.split(",")):
            points = KILL_CHAINS[chain]
            workdir = os.path.join(base, chain)
            codes, error = run_chain(workdir, backend, points)
            kills = os.path.join(workdir + ".kills")
            used = set(os.listdir(kills)) if os.path.isdir(kills) else set()
            identical = error is None and same(outcome(workdir), reference)
            for point in points:
                reached = point.replace(":", "_").replace("/", "_") in used
                lines.append(
                    f"| {backend} | {chain} | `{point}` | {'yes' if reached else 'NOT REACHED'} "
                    f"| {'yes' if error is None else 'NO'} | {'yes' if identical else 'NO'} |"
                )
            print("\n".join(lines[-len(points) :]), flush=True)
            if error:
                print(f"{backend} {chain} failed: exit codes {codes}\n{error}", flush=True)
        seeds = range(args.random_first_seed, args.random_first_seed + args.random_chains)
        for seed in seeds:
            workdir = os.path.join(base, f"random-{seed}")
            codes, error = run_chain(
                workdir,
                backend,
                random_kills=args.random_kills,
                rng=random.Random(seed),
                window=args.random_window,
            )
            identical = error is None and same(outcome(workdir), reference)
            lines.append(
                f"| {backend} | random seed {seed} | {codes.count(-9)} kills at random times "
                f"| yes | {'yes' if error is None else 'NO'} | {'yes' if identical else 'NO'} |"
            )
            print(lines[-1], flush=True)
            if error:
                print(f"{backend} random {seed} failed: exit codes {codes}\n{error}", flush=True)
    header = [
        "| backend | chain | kill point | killed there | resumed to the end | identical |",
        "|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + lines)
    failures = sum("| NO |" in line or "NOT REACHED" in line for line in lines)
    summary = f"\n{len(lines)} rows, {failures} with a failure."
    with open(os.path.join(args.out, "fault_table.md"), "w") as f:
        f.write(table + summary + "\n")
    print(table + summary)


if __name__ == "__main__":
    main()
