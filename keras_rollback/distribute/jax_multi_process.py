"""Joining a multi-process job on the JAX backend (`keras.distribution`)."""

import contextlib

import keras


def join_job(num_processes, process_id, worker_addresses):
    """Joins the job and returns a scope factory that does nothing; blocks until all have joined.

    `keras.distribution.initialize` connects to the coordinator (`worker_addresses[0]`) and
    `keras.distribution.DataParallel` over the devices of every process becomes the global
    distribution.
    """
    keras.distribution.initialize(
        job_addresses=worker_addresses[0],
        num_processes=num_processes,
        process_id=process_id,
    )
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    return contextlib.nullcontext
