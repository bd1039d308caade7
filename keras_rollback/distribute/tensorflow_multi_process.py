"""Joining a multi-process job on the TensorFlow backend (`MultiWorkerMirroredStrategy`)."""

import json
import os

import tensorflow as tf

from keras_rollback import compat


def join_job(num_processes, process_id, worker_addresses):
    """Joins the job and returns the strategy's scope factory; blocks until all have joined.

    `TF_CONFIG` names every worker (`worker_addresses[i]` is process `i`'s); models must be
    built and compiled inside the returned `strategy.scope`.
    """
    del num_processes  # TF_CONFIG's worker list carries it.
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": list(worker_addresses)},
            "task": {"type": "worker", "index": process_id},
        }
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    compat.fix_tensorflow_trainer_for_multi_worker_strategy()
    return strategy.scope
