"""The launcher: `python -m experiments.main` as two processes on 127.0.0.1 (TensorFlow, JAX; on
torch started by `torchrun`, whose environment names the job).

That two processes train like one with the same global batch is checked exactly, on a model
whose pre-trained weights both are given, by `distribute_multi_process_job_test.py`; here the whole
experiment runs through the launcher (pre-training on the synthetic source task included)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import pytest

TIMEOUT_S = 480  # Both processes, on a busy 2-core machine.
METHOD = "rollback"


def _coordinator():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))  # TensorFlow's worker 1.
            except OSError:
                continue
        return f"127.0.0.1:{port}"


def _launcher_command(workdir, process_id, coordinator):
    return [
        sys.executable,
        "-m",
        "experiments.main",
        "--config=experiments/configs/smoke.py",
        f"--workdir={workdir}",
        f"--config.methods=('{METHOD}',)",
        "--config.distribution.num_processes=2",
        f"--config.distribution.process_id={process_id}",
        f"--config.distribution.coordinator={coordinator}",
    ]


@pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="multi-process training runs on the tensorflow and jax backends",
)
def test_two_launcher_processes_train_and_evaluate_one_model(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    workdir = tmp_path / "two"
    coordinator = _coordinator()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=root)
    processes, logs = [], []
    for process_id in range(2):
        logs.append(tmp_path / f"process-{process_id}.log")
        with open(logs[-1], "w") as log:
            processes.append(
                subprocess.Popen(
                    _launcher_command(workdir, process_id, coordinator),
                    cwd=root,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in processes):
            if any(p.returncode not in (None, 0) for p in processes) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    text = "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in logs)
    assert [p.returncode for p in processes] == [0, 0], text

    # The chief wrote the run; process 1's private folder is gone.
    assert (workdir / "results.json").is_file() and (workdir / METHOD / "cmc.png").is_file()
    assert not (workdir / ".process-1").exists()
    assert json.loads((workdir / "config.json").read_text())["distribution"]["process_id"] == 0

    rows = json.loads((workdir / "results.json").read_text())
    assert [(r["method"], r["epoch"], r["period"]) for r in rows] == [
        (METHOD, 1, 1),
        (METHOD, 2, 2),
    ]
    assert all(0.0 <= r["mAP"] <= 1.0 for r in rows)
    # Both processes trained and evaluated the same model: process 1 logged the same scores.
    for epoch, row in zip((1, 2), rows):
        assert (
            f"Epoch {epoch}, end of period {epoch}: loss={row['loss']:.4f}" in logs[1].read_text()
        )


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torchrun launches torch jobs")
def test_torchrun_launches_two_processes_that_train_and_evaluate_one_model(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    workdir = tmp_path / "torchrun"
    port = _coordinator().rsplit(":", 1)[1]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=root, PYTHONUNBUFFERED="1")
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    # As a user types it: `torchrun --nproc_per_node=2 -m experiments.main ...`.
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        *_launcher_command(workdir, 0, "")[1:6],  # No --config.distribution flags.
    ]
    log = tmp_path / "torchrun.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text()
    assert process.returncode == 0, text[-6000:]
    config = json.loads((workdir / "config.json").read_text())["distribution"]
    assert config == {
        "num_processes": 2,
        "process_id": 0,
        "coordinator": f"127.0.0.1:{port}",
        "worker_addresses": "",
    }
    assert (workdir / "results.json").is_file() and not (workdir / ".process-1").exists()
    rows = json.loads((workdir / "results.json").read_text())
    assert [(r["method"], r["epoch"]) for r in rows] == [(METHOD, 1), (METHOD, 2)]
    # Both processes trained and evaluated the same model: each logged the chief's scores.
    for epoch, row in zip((1, 2), rows):
        line = f"Epoch {epoch}, end of period {epoch}: loss={row['loss']:.4f}, "
        assert text.count(line) == 2, text[-6000:]


def test_torchrun_environment_names_the_job_on_torch_only():
    from experiments import launch

    assert launch.distribution_from_torchrun({}) is None
    assert launch.distribution_from_torchrun({"WORLD_SIZE": "1", "RANK": "0"}) is None
    environ = {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    if keras.backend.backend() != "torch":
        with pytest.raises(ValueError, match="for the torch backend"):
            launch.distribution_from_torchrun(environ)
        return
    assert launch.distribution_from_torchrun(environ) == (2, 1, "node0:29500")
    with pytest.raises(ValueError, match="MASTER_PORT is not"):
        launch.distribution_from_torchrun({k: v for k, v in environ.items() if k != "MASTER_PORT"})
