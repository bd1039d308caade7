"""Two real processes on 127.0.0.1: MultiWorkerMirroredStrategy (TensorFlow), jax.distributed +
DataParallel (JAX), torch.distributed over Gloo with bucketed gradient averaging (torch; the model
normalises with LayerNormalization there, see two_process_job.py). `two_process_job.py` is one
process of the job.

On the active backend: (1) an uninterrupted two-process job, whose chief also trains the same
model alone with the same global batch; (2) the job again, with process 1 SIGKILLed after the
first step of epoch 3 (mid-period 2) and process 0 killed after it (a scheduler ends the whole
job), then restarted with the same command: it resumes from the chief's last checkpoint.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_rollback.distribute.multi_process_job import MultiProcessJob

JOB = pathlib.Path(__file__).resolve().with_name("two_process_job.py")
PROCESSES = 2
TIMEOUT_S = 420  # Per job, on a busy 2-core machine; nothing is left running after it.
KILL_EPOCH = 3

needs_engine = pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax", "torch"),
    reason="multi-process training runs on the tensorflow, jax and torch backends",
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _coordinator():
    # TensorFlow's workers listen on consecutive ports from the coordinator's.
    while True:
        port = _free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return f"127.0.0.1:{port}"


def _start(workdir, *extra):
    coordinator = _coordinator()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    processes = []
    for process_id in range(PROCESSES):
        with open(workdir / f"process-{process_id}.log", "a") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(JOB), str(workdir), str(PROCESSES), str(process_id)]
                    + [coordinator, *extra],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Its own process group: killed as a whole.
                )
            )
    return processes


def _kill_all(processes):
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _logs(workdir):
    return "\n".join(
        f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(workdir.glob("process-*.log"))
    )


def _run_job(workdir, *extra):
    """Runs both processes to the end; fails (killing both) on an error or the timeout."""
    processes = _start(workdir, *extra)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                pytest.fail(f"Job failed or timed out:\n{_logs(workdir)}")
            time.sleep(0.5)
        if any(p.returncode != 0 for p in processes):
            pytest.fail(f"Job failed:\n{_logs(workdir)}")
    finally:
        _kill_all(processes)
    return [dict(np.load(workdir / f"result-{i}.npz")) for i in range(PROCESSES)]


def _weights(result, prefix="weight"):
    count = sum(1 for key in result if key.startswith(f"{prefix}_"))
    return [result[f"{prefix}_{i}"] for i in range(count)]


def _max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    started = time.monotonic()
    results = _run_job(workdir, "--single-reference")
    print(f"\nTwo-process {keras.backend.backend()} job: {time.monotonic() - started:.0f} s")
    return workdir, results, dict(np.load(workdir / "single-reference.npz"))


@needs_engine
def test_every_process_holds_the_pretrained_weights_and_zero_momentum_after_each_rollback(
    uninterrupted,
):
    _, results, _ = uninterrupted
    paths = list(results[0]["paths"])
    pretrained = _weights(results[0], "initial")
    for result in results:
        assert _max_difference(_weights(result, "initial"), pretrained) == 0.0
        assert list(result["probed_epochs"]) == [2, 4]
    rolled_back = {2: ("b2_", "b3_", "b4_"), 4: ("b3_", "b4_")}
    checked = 0
    for epoch, prefixes in rolled_back.items():
        for result in results:
            for i, path in enumerate(paths):
                copies = result[f"probe_{epoch}_weights_{i}"]
                if path.startswith(prefixes):
                    # Every copy on every process: exactly the pre-trained value, although
                    # training had changed it (checked below through the final weights).
                    assert np.array_equal(copies, np.broadcast_to(pretrained[i], copies.shape))
                    checked += len(copies)
            momenta = [result[k] for k in result if k.startswith(f"probe_{epoch}_momenta_")]
            assert momenta and all(not np.any(m) for m in momenta)
        # The processes agree on every other weight too (kept blocks, head).
        for i in range(len(paths)):
            assert np.array_equal(
                results[0][f"probe_{epoch}_weights_{i}"], results[1][f"probe_{epoch}_weights_{i}"]
            )
    assert checked >= 2 * 5 * PROCESSES  # Conv and BN weights of B2-B4, then B3-B4.
    rolled = [i for i, p in enumerate(paths) if p.startswith("b2_")]
    assert max(np.max(np.abs(results[0][f"weight_{i}"] - pretrained[i])) for i in rolled) > 1e-3


@needs_engine
def test_two_processes_train_like_one_with_the_same_global_batch(uninterrupted):
    _, results, single = uninterrupted
    assert _max_difference(_weights(results[0]), _weights(results[1])) == 0.0
    assert _max_difference(_weights(results[0], "initial"), _weights(single)) > 1e-2
    difference = _max_difference(_weights(results[0]), _weights(single))
    print(f"\nTwo processes vs one, same global batch: max |weight difference| = {difference:.3g}")
    assert difference < 1e-5
    assert _max_difference(_weights(results[0], "momentum"), _weights(single, "momentum")) < 1e-5
    assert np.max(np.abs(results[0]["loss"] - single["loss"])) < 1e-5
    # Evaluation features: the same on both processes and as the single process's.
    assert np.array_equal(results[0]["features"], results[1]["features"])
    assert results[0]["features"].shape == single["features"].shape == (16, 4)
    assert np.max(np.abs(results[0]["features"] - single["features"])) < 1e-5


@needs_engine
def test_the_chief_alone_writes_the_run_files(uninterrupted):
    workdir, _, _ = uninterrupted
    assert (workdir / "pretrained.npz").exists()
    assert sorted(p.name for p in (workdir / "checkpoints").glob("*.json")) == [
        "epoch-000005.json",
        "epoch-000006.json",
    ]
    assert not (workdir / ".process-1").exists()  # Process 1's private files are gone.


@needs_engine
def test_a_killed_worker_job_resumes_from_the_last_checkpoint(uninterrupted, tmp_path):
    _, reference, _ = uninterrupted
    processes = _start(tmp_path, f"--kill-at-epoch={KILL_EPOCH}")
    try:
        processes[1].wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_all(processes)
        pytest.fail(f"Process 1 did not reach its kill point:\n{_logs(tmp_path)}")
    _kill_all(processes)  # The scheduler ends the rest of the job.
    assert processes[1].returncode == -signal.SIGKILL
    manifests = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.json"))
    assert manifests[-1] == f"epoch-{KILL_EPOCH:06d}.json"  # Epochs 1-3 done, epoch 4 began.
    assert not (tmp_path / "result-0.npz").exists()

    resumed = _run_job(tmp_path)  # The same command again.
    logs = _logs(tmp_path)
    assert f"after {KILL_EPOCH} finished epochs" in logs
    difference = _max_difference(_weights(resumed[0]), _weights(reference[0]))
    print(f"\nKilled and resumed vs uninterrupted: max |weight difference| = {difference:.3g}")
    assert difference < 1e-6
    assert _max_difference(_weights(resumed[1]), _weights(resumed[0])) == 0.0
    assert np.max(np.abs(resumed[0]["features"] - reference[0]["features"])) < 1e-6


def test_job_arguments_are_checked():
    with pytest.raises(ValueError, match=r"num_processes=0.*coordinator='node0'"):
        MultiProcessJob(0, 0, "node0")
    with pytest.raises(ValueError, match=r"process_id=2 \(expected 0 <= process_id"):
        MultiProcessJob(2, 2, "node0:1234")
    with pytest.raises(ValueError, match=r"worker_addresses=\['a:1'\]"):
        MultiProcessJob(2, 0, "node0:1234", worker_addresses=["a:1"])
    job = MultiProcessJob(3, 2, "node0:1234")
    assert job.worker_addresses == ["node0:1234", "node0:1235", "node0:1236"]
    assert job.process_directory("/run") == os.path.join("/run", ".process-2")
    assert MultiProcessJob(3, 0, "node0:1234").process_directory("/run") == "/run"
    with pytest.raises(RuntimeError, match="start"):
        job.scope()


_JOIN = """
import sys, time
from keras_rollback.distribute.multi_process_job import MultiProcessJob
job = MultiProcessJob(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], join_timeout_s=3)
started = time.monotonic()
try:
    job.start()
except RuntimeError as error:
    print(f"FAILED after {time.monotonic() - started:.1f} s: {error}")
    sys.exit(3)
"""


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch backend's join timeout")
def test_a_torch_process_that_cannot_join_fails_with_a_clear_error_within_the_timeout():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Process 0 of a 2-process job whose process 1 never comes (a wrong world size), and
    # process 1 of a job whose coordinator nobody serves (unreachable).
    cases = {"alone": (0, _free_port()), "unreachable": (1, _free_port())}
    running = {
        name: subprocess.Popen(
            [sys.executable, "-c", _JOIN, "2", str(rank), f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, (rank, port) in cases.items()
    }
    for name, process in running.items():
        rank, port = cases[name]
        output = process.communicate(timeout=180)[0]
        assert process.returncode == 3, output
        line = next(line for line in output.splitlines() if line.startswith("FAILED after"))
        assert float(line.split()[2]) < 3 + 10, line  # The 3 s join timeout, not a hang.
        assert f"Process {rank} could not join the 2-process torch.distributed job" in line
        assert f"127.0.0.1:{port}" in line and f"port {port}" in line
        assert "join_timeout_s=3" in line and "same world size (2)" in line


def test_one_process_job_is_a_plain_run():
    job = MultiProcessJob(1, 0, "").start()
    with job.scope():
        pass
    with pytest.raises(ValueError, match=r"join_timeout_s=0"):
        MultiProcessJob(2, 0, "127.0.0.1:1234", join_timeout_s=0)
