"""Runs an experiment as one process of a multi-process job, or alone.

Every process (one per machine, or several on one) runs the same command with its own
`--config.distribution.process_id`; process 0 is the chief and writes the work dir, the others
write to `<workdir>/.process-<i>` (removed at the end) and, on a restart, first copy the chief's
state from the work dir (snapshots, checkpoints, finished methods), so that the restarted job
resumes where the chief's last checkpoint left it. `config.batch_size` is the global batch.

On the torch backend, `torchrun --nproc_per_node=N -m experiments.main ...` launches the job
too: when `--config.distribution.num_processes` is not given, the processes are read from the
environment torchrun sets (`WORLD_SIZE`, `RANK`, `MASTER_ADDR`, `MASTER_PORT`; `LOCAL_RANK` picks
the GPU).
"""

import os
import shutil

import keras
from absl import logging

from experiments import train
from keras_rollback.distribute.multi_process_job import MultiProcessJob

# What a non-chief process does not take over from the chief's work dir: its record of the
# command (process_id differs) and what is only written, never read back.
_NOT_COPIED = ("config.json", "tensorboard")


def run(config, workdir, *, start_over=False):
    """`train.run_experiment(config, workdir)` on the processes `config.distribution` names
    (`start_over`: a new run in a work dir that holds one, single-process jobs only)."""
    distribution = config.distribution
    if distribution.num_processes == 1:
        torchrun = distribution_from_torchrun(os.environ)
        if torchrun is not None:
            distribution.num_processes, distribution.process_id, distribution.coordinator = torchrun
    if distribution.num_processes == 1:
        return train.run_experiment(config, workdir, start_over=start_over)
    if start_over:
        raise ValueError(
            "--start_over is for single-process jobs; delete the work dir to start a "
            f"{distribution.num_processes}-process job over."
        )
    job = MultiProcessJob(
        distribution.num_processes,
        distribution.process_id,
        distribution.coordinator,
        worker_addresses=distribution.worker_addresses.split(",")
        if distribution.worker_addresses
        else None,
    )
    directory = job.process_directory(workdir)
    if not job.is_chief:
        # Before joining: the chief writes nothing until every process has joined.
        _copy_chief_state(workdir, directory)
    logging.info("%s joining; it writes to %s", job, directory)
    job.start()
    rows = train.run_experiment(config, directory, model_scope=job.scope)
    job.close()
    if not job.is_chief:
        shutil.rmtree(directory, ignore_errors=True)
    return rows


def distribution_from_torchrun(environ):
    """`(num_processes, process_id, coordinator)` from torchrun's environment, or None.

    None when `WORLD_SIZE` is absent or 1. Other backends than torch refuse it: their
    coordinator cannot share `MASTER_PORT` with torchrun's agent.
    """
    world_size = int(environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return None
    backend = keras.backend.backend()
    if backend != "torch":
        raise ValueError(
            f"WORLD_SIZE={world_size} is set (torchrun?), but reading the job from torchrun's "
            f"environment is for the torch backend; on {backend!r} start each process with "
            "--config.distribution.num_processes/process_id/coordinator."
        )
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world_size} is set but {', '.join(missing)} is not: launch with "
            "torchrun, or give --config.distribution.num_processes/process_id/coordinator."
        )
    coordinator = f"{environ['MASTER_ADDR']}:{environ['MASTER_PORT']}"
    return world_size, int(environ["RANK"]), coordinator


def _copy_chief_state(workdir, directory):
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    if not os.path.isdir(workdir):
        return
    ignore = shutil.ignore_patterns(".*", *_NOT_COPIED)
    for name in os.listdir(workdir):
        if name.startswith(".") or name in _NOT_COPIED:
            continue
        source = os.path.join(workdir, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(directory, name), ignore=ignore)
        else:
            shutil.copy2(source, directory)
