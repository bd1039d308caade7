"""Fault injection: SIGKILL a resumable RollbackRefine run anywhere, rerun it, get the uninterrupted result.

Runs `fault_injection_job.py` in subprocesses on the active backend: one
uninterrupted reference and chains of runs (two checkpointed by
`RunCheckpoint`, one by `keras.callbacks.BackupAndRestore`) that each SIGKILL
themselves at the next kill point and are rerun with the same command until
they finish. Then a full disk while checkpointing and a NaN loss, in process.
"""

import errno
import json
import os
import pathlib
import subprocess
import sys
import time

import fault_injection_job as job
import keras
import numpy as np
import pytest

from keras_rollback.callbacks.run_checkpoint import RunCheckpoint

JOB = pathlib.Path(__file__).with_name("fault_injection_job.py")
# The chains run side by side; each kill point is reached in its chain's order.
KILL_CHAINS = {
    "periods_1_2": [
        "snapshot_write",  # Temp file of the pre-trained snapshot written, not renamed.
        "train_batch:0:2",  # Mid-epoch, before any checkpoint: the rerun loads the snapshot file.
        "eval_batch:1:1",  # During the validation at the end of an epoch.
        "after_rollback:2",  # Period 2's rollback and momentum reset done, no step taken.
        "checkpoint_write:2",  # Weights written to the temp file, not renamed.
    ],
    "periods_2_3": [
        "manifest_write:1",  # Weights renamed, manifest not written: the weights file is ignored.
        "train_batch:3:1",  # Mid-epoch after the in-period learning-rate decay.
        "after_rollback:4",  # Period 3's rollback.
        "corrupt_newest:4",  # Newest checkpoint damaged on disk: the rerun falls back to the previous one.
    ],
    # The same run resumed by keras.callbacks.BackupAndRestore instead of RunCheckpoint.
    "backup_and_restore": [
        "after_rollback:2",
        "train_batch:3:1",
    ],
}
KILL_POINTS = sum(len(points) for points in KILL_CHAINS.values())
# CPU kernels differ between a fresh process and a resumed one only in XLA/ATen's
# choice of reduction order; TensorFlow with op determinism must match exactly.
TOLERANCE = {"tensorflow": 0.0, "jax": 1e-6, "torch": 1e-6}


def _start(workdir, kill_points=()):
    """Starts one run; its output goes to a new log file (a pipe could fill up while others are waited for)."""
    workdir.mkdir(exist_ok=True)
    log = workdir / f"run-{len(list(workdir.glob('run-*.log')))}.log"
    checkpointer = (
        "backup_and_restore" if workdir.name == "backup_and_restore" else "run_checkpoint"
    )
    env = dict(
        os.environ,
        FAULT_KILL_POINTS=",".join(kill_points),
        FAULT_CHECKPOINTER=checkpointer,
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, str(JOB), str(workdir)], env=env, stdout=output, stderr=output
        )
    process.log = log
    return process


def _final_weights(workdir):
    with np.load(workdir / "final.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_sigkill_at_every_kill_point_then_rerun_ends_like_an_uninterrupted_run(tmp_path):
    reference = _start(tmp_path / "reference")
    outputs = {}
    running = {name: _start(tmp_path / name, points) for name, points in KILL_CHAINS.items()}
    while running:
        time.sleep(0.1)
        for name, process in list(running.items()):
            if process.poll() is None:
                continue
            output = process.log.read_text()
            outputs.setdefault(name, []).append((process.returncode, output))
            assert process.returncode in (0, -9), (
                f"{name} run {len(outputs[name])} failed:\n{output}"
            )
            if process.returncode == 0:
                del running[name]
            else:
                assert len(outputs[name]) <= len(KILL_CHAINS[name]), (
                    f"{name} keeps dying:\n{output}"
                )
                running[name] = _start(tmp_path / name, KILL_CHAINS[name])
    reference.wait()
    assert reference.returncode == 0, reference.log.read_text()

    expected = _final_weights(tmp_path / "reference")
    differences = {}
    for name, points in KILL_CHAINS.items():
        runs = outputs[name]
        assert [code for code, _ in runs] == [-9] * len(points) + [0], name
        assert sorted(os.listdir(tmp_path / name / "kills")) == sorted(
            p.replace(":", "_") for p in points
        )
        found = _final_weights(tmp_path / name)
        differences[name] = max(float(np.max(np.abs(found[k] - expected[k]))) for k in expected)
        leftovers = [n for n in os.listdir(tmp_path / name) if n.startswith(".")]
        if name != "backup_and_restore":
            leftovers += [
                n for n in os.listdir(tmp_path / name / "checkpoints") if n.startswith(".")
            ]
        assert not leftovers, f"{name}: temp files left behind: {leftovers}"
    print(
        f"\n{KILL_POINTS} kill points on {keras.config.backend()}: max |resumed - uninterrupted| "
        f"final weight difference per chain: {differences}"
    )
    assert max(differences.values()) <= TOLERANCE[keras.config.backend()], differences

    # Every run after a kill said where it resumed; the damaged checkpoint was named.
    late_output = "".join(output for _, output in outputs["periods_2_3"][1:])
    assert "RunCheckpoint: resumed from" in late_output
    damaged = "epoch-000005.weights.h5' is truncated or corrupt"
    assert damaged in outputs["periods_2_3"][-1][1], outputs["periods_2_3"][-1][1]
    assert "after 4 finished epochs" in outputs["periods_2_3"][-1][1]


def _fit_with_checkpoint(directory, epochs, data=None, callbacks=()):
    model = job.compiled_model()
    checkpoint = RunCheckpoint(directory)
    data = data or job.train_data()
    model.fit(
        data,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[job.FollowEpoch(data), checkpoint, *callbacks],
    )
    return model, checkpoint


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint_and_names_the_file(
    tmp_path, monkeypatch
):
    directory = tmp_path / "checkpoints"
    _fit_with_checkpoint(directory, epochs=1)
    before = {n: (directory / n).read_bytes() for n in os.listdir(directory)}

    def full_disk_save_weights(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", full_disk_save_weights)
    with pytest.raises(
        OSError, match=r"epoch-000002\.weights\.h5.*No space left on device"
    ) as info:
        _fit_with_checkpoint(directory, epochs=2)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert {
        n: (directory / n).read_bytes() for n in os.listdir(directory)
    } == before  # No temp file either.
    assert RunCheckpoint(directory).newest()["epoch"] == 1


def test_nan_loss_stops_at_once_naming_epoch_step_and_last_good_checkpoint(tmp_path):
    directory = tmp_path / "checkpoints"
    data = job.train_data(nan_at=(2, 1))
    model = job.compiled_model()
    checkpoint = RunCheckpoint(directory)
    with pytest.raises(
        FloatingPointError, match=r"Loss is nan at epoch 3, step 2.*epoch-000002\.weights\.h5"
    ):
        model.fit(
            data,
            epochs=4,
            verbose=0,
            shuffle=False,
            callbacks=[job.FollowEpoch(data), checkpoint, job.NanGuard(checkpoint)],
        )
    assert sorted(os.listdir(directory)) == [
        "epoch-000001.json",
        "epoch-000001.weights.h5",
        "epoch-000002.json",
        "epoch-000002.weights.h5",
    ]


EXPERIMENT_JOB = pathlib.Path(__file__).with_name("experiment_fault_job.py")
# A few of tools/fault_table.py's kill points of the experiment runner, on a one-method,
# one-epoch smoke run: the synthetic dataset cut while written, a cut epoch-log line, and a
# kill after the last checkpoint (the rerun evaluates and marks the method finished).
EXPERIMENT_KILL_POINTS = ["image:20", "line:fine_tune:0", "epoch_end:fine_tune:0"]


def _start_experiment(workdir, kill_points=()):
    env = dict(
        os.environ,
        FAULT_KILL_POINTS=",".join(kill_points),
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join([str(JOB.parent.parent), os.environ.get("PYTHONPATH", "")]),
    )
    log = pathlib.Path(f"{workdir}-{len(list(workdir.parent.glob(workdir.name + '-*.log')))}.log")
    with open(log, "w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                str(EXPERIMENT_JOB),
                f"--workdir={workdir}",
                "--config=experiments/configs/smoke.py",
                "--config.methods=('fine_tune',)",
            ],
            env=env,
            stdout=output,
            stderr=output,
            cwd=JOB.parent.parent,
        )
    process.log = log
    return process


def _results_without_wall_times(workdir):
    rows = json.loads((workdir / "results.json").read_text())
    # Wall times and the work dir's path differ between runs; everything else must not.
    return [
        {k: v for k, v in row.items() if k not in ("wall_time", "weights_file")} for row in rows
    ]


def test_experiment_killed_at_its_kill_points_resumes_to_the_uninterrupted_results(tmp_path):
    reference = _start_experiment(tmp_path / "reference")
    runs = []
    while True:
        process = _start_experiment(tmp_path / "killed", EXPERIMENT_KILL_POINTS)
        process.wait()
        runs.append(process.returncode)
        assert process.returncode in (0, -9), process.log.read_text()
        if process.returncode == 0:
            break
        assert len(runs) <= len(EXPERIMENT_KILL_POINTS), process.log.read_text()
    reference.wait()
    assert reference.returncode == 0, reference.log.read_text()
    assert runs == [-9] * len(EXPERIMENT_KILL_POINTS) + [0]
    assert _results_without_wall_times(tmp_path / "killed") == _results_without_wall_times(
        tmp_path / "reference"
    )
    last = process.log.read_text()
    assert "fine_tune: all 1 epochs were trained in an earlier run" in last, last
    assert (tmp_path / "killed" / "fine_tune" / "cmc.png").is_file()
