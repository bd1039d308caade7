"""Runs an experiment as one process of a multi-process job, or alone.

Every process (one per machine, or several on one) runs the same command with its own
`--config.distribution.process_id`; process 0 is the chief and writes the work dir, the others
write to `<workdir>/.process-<i>` (removed at the end) and, on a restart, first copy the chief's
state from the work dir (snapshots, checkpoints, finished methods), so that the restarted job
resumes where the chief's last checkpoint left it. `config.batch_size` is the global batch.
"""

import os
import shutil

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
    if not job.is_chief:
        shutil.rmtree(directory, ignore_errors=True)
    return rows


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
