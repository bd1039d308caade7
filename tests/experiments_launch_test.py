"""The launcher: `python -m experiments.main` as two processes on 127.0.0.1 (TensorFlow, JAX)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import pytest

from experiments import train
from experiments.configs import smoke

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
def test_two_launcher_processes_give_the_single_process_results(tmp_path):
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

    config = smoke.get_config()
    config.methods = (METHOD,)
    single = train.run_experiment(config, str(tmp_path / "one"))
    two = json.loads((workdir / "results.json").read_text())
    assert len(two) == len(single) == 2
    for a, b in zip(two, single):
        assert a["epoch"] == b["epoch"] and a["period"] == b["period"]
        for key in ("loss", "mAP", "rank1"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), (key, a, b)
