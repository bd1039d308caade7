"""`MultiProcessJob`: one process of a data-parallel job over several processes or machines."""

import contextlib
import os

import keras


class MultiProcessJob:
    """One process of a data-parallel training job over several processes or machines.

    Every process runs the same script with its own `process_id`; process 0
    is the chief. `start()` joins the job (it blocks until every process has
    joined): on TensorFlow through `tf.distribute.MultiWorkerMirroredStrategy`
    (`TF_CONFIG` is written from `worker_addresses`), on JAX through
    `keras.distribution.initialize` (the coordinator is process 0) and
    `keras.distribution.DataParallel` over the devices of every process, on
    torch through `torch.distributed` (NCCL when the process has a CUDA
    GPU, Gloo otherwise; the coordinator is process 0's TCP store, under
    `torchrun` `MASTER_ADDR:MASTER_PORT`) and this library's data
    parallelism, modelled on `DistributedDataParallel` (Keras 3 has none on
    torch; see `keras_rollback/distribute/torch_multi_process.py`).

    Build and compile the model inside `scope()` (it keeps the strategy;
    `fit` may run outside). Build an evaluation feature model outside it:
    each process then extracts all features on its own (on TensorFlow, a
    model built inside takes each process's batch as a share of a larger
    one). Give `fit` the global batch (`dataset.batch(global_batch_size, drop_remainder=True)`):
    each process feeds its share of every global batch (TensorFlow shards
    the dataset by batch, Keras' `DataParallel` rebatches and shards it per
    process, and on torch the `fit` of a model compiled in the scope keeps
    rows `[r * n // N, (r + 1) * n // N)` of each batch of `n` on process
    `r` of `N`: a `tf.data.Dataset`, a `keras.utils.PyDataset` or NumPy
    arrays with `batch_size`), each step averages the loss over the global
    batch, and the gradients are all-reduced (on torch: flattened into
    ~25 MB buckets, one all-reduce each, before `optimizer.apply`, for any
    Keras optimizer), so the job takes the steps of one process with the
    same global batch. On torch, process 0's weights and optimizer state are
    given to every process when `fit` begins (before `RollbackRefine`
    captures its snapshot), its non-trainable variables (BatchNorm moving
    statistics) after every epoch, and the epoch's logs are averaged over the
    processes, so that every callback decides alike. BatchNorm on torch
    normalises each process's share with its own batch statistics (DDP
    without `SyncBatchNorm`): with BatchNorm in training mode, a torch job is
    not the same computation as one process with the global batch. Validation
    data is not sharded: every process evaluates all of it.
    `RollbackRefine`'s rollbacks and momentum resets happen in
    `on_epoch_begin` on every process alike, from the same snapshot file.

    Files: every process writes (saving a TensorFlow model can involve
    collectives, so all must), the chief to the real paths and the others
    to `process_directory(...)`, a private folder that only that process
    uses (Keras' multi-worker guidance). A resumed job reads the chief's
    checkpoints: a non-chief process copies what it needs from the chief's
    directory before `start()`, since the chief writes nothing until every
    process has joined.

    Example (on torch, `torchrun --nproc_per_node=2 train.py` sets `RANK`,
    `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`):

    ```python
    job = MultiProcessJob(num_processes=int(os.environ["WORLD_SIZE"]),
                          process_id=int(os.environ["RANK"]),
                          coordinator=f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}")
    workdir = job.process_directory("/shared/run")
    job.start()
    with job.scope():
        model = build_model()
        model.compile(optimizer=LayerwiseSGD(...), loss=...)
    model.fit(train_ds.batch(32, drop_remainder=True), epochs=160,  # the global batch
              callbacks=[RollbackRefine(partition, period_epochs=40,
                                        snapshot=f"{workdir}/pretrained.npz"),
                         RunCheckpoint(f"{workdir}/checkpoints")])
    ```

    Args:
        num_processes: Integer >= 1. Processes in the job (1: a plain
            single-process run; `start()` does nothing).
        process_id: Integer in `[0, num_processes)`. This process; 0 is the
            chief.
        coordinator: String `"host:port"`: process 0's address, reachable
            from every process. JAX's coordinator listens there; on
            TensorFlow it is worker 0's address.
        worker_addresses: Optional sequence of `num_processes` `"host:port"`
            strings, process `i`'s TensorFlow server at index `i` (the first
            must be `coordinator`). Defaults to `None`: the coordinator's host
            with consecutive ports from the coordinator's (every process on
            one machine).
        join_timeout_s: Number > 0. On torch, how long `start()` waits for
            every process to join before it raises a `RuntimeError` naming
            the coordinator, world size and rank (a missing process, a wrong
            world size, an unreachable coordinator). Defaults to `300`.
            TensorFlow and JAX wait as they do.
    """

    def __init__(
        self, num_processes, process_id, coordinator, worker_addresses=None, join_timeout_s=300
    ):
        problems = []
        count_ok = isinstance(num_processes, int) and not isinstance(num_processes, bool)
        if not count_ok or num_processes < 1:
            count_ok = False
            problems.append(f"num_processes={num_processes!r} (expected an integer >= 1)")
        if isinstance(process_id, bool) or not isinstance(process_id, int):
            problems.append(f"process_id={process_id!r} (expected an integer)")
        elif count_ok and not 0 <= process_id < num_processes:
            problems.append(
                f"process_id={process_id!r} (expected 0 <= process_id < num_processes="
                f"{num_processes})"
            )
        if num_processes != 1 and _port(coordinator) is None:
            problems.append(f"coordinator={coordinator!r} (expected 'host:port')")
        if worker_addresses is not None:
            worker_addresses = list(worker_addresses)
            if (
                len(worker_addresses) != num_processes
                or any(_port(a) is None for a in worker_addresses)
                or worker_addresses[0] != coordinator
            ):
                problems.append(
                    f"worker_addresses={worker_addresses!r} (expected num_processes="
                    f"{num_processes} 'host:port' strings, the first being the coordinator "
                    f"{coordinator!r})"
                )
        if (
            isinstance(join_timeout_s, bool)
            or not isinstance(join_timeout_s, (int, float))
            or not join_timeout_s > 0
        ):
            problems.append(f"join_timeout_s={join_timeout_s!r} (expected a number > 0)")
        if problems:
            raise ValueError(f"Invalid multi-process job. Received: {'; '.join(problems)}.")
        self.num_processes = num_processes
        self.process_id = process_id
        self.coordinator = coordinator
        self.join_timeout_s = join_timeout_s
        if worker_addresses is None and num_processes > 1:
            host, port = coordinator.rsplit(":", 1)
            worker_addresses = [f"{host}:{int(port) + i}" for i in range(num_processes)]
        self.worker_addresses = worker_addresses
        self._scope = None

    @property
    def is_chief(self):
        """Whether this is process 0, the one whose files are the job's results."""
        return self.process_id == 0

    def process_directory(self, directory):
        """Where this process writes what belongs in `directory`.

        The chief writes to `directory` itself; process `i > 0` to
        `directory/.process-<i>`, which it alone uses.
        """
        directory = os.fspath(directory)
        if self.is_chief:
            return directory
        return os.path.join(directory, f".process-{self.process_id}")

    def start(self):
        """Joins the job; blocks until every process has joined. Returns `self`.

        Call it before the backend computes anything (JAX and TensorFlow
        both require it), and once per process.
        """
        if self._scope is not None:
            raise RuntimeError(f"Process {self.process_id} has already joined the job.")
        if self.num_processes == 1:
            self._scope = contextlib.nullcontext
        else:
            timeout = (
                {"join_timeout_s": self.join_timeout_s}
                if keras.backend.backend() == "torch"
                else {}
            )
            self._scope = _backend_job_module().join_job(
                self.num_processes, self.process_id, self.worker_addresses, **timeout
            )
        return self

    def close(self):
        """Leaves the job at the end: on torch, destroys the process group; else does nothing."""
        if self._scope is None or self.num_processes == 1 or keras.backend.backend() != "torch":
            return
        import torch.distributed

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def scope(self):
        """Context in which to build, compile and train the model (after `start()`)."""
        if self._scope is None:
            raise RuntimeError("Call `start()` before `scope()`.")
        return self._scope()

    def __repr__(self):
        return (
            f"MultiProcessJob(num_processes={self.num_processes}, process_id={self.process_id}, "
            f"coordinator={self.coordinator!r})"
        )


def _backend_job_module():
    """The module that joins a job on the active backend (a file named for it beside this one)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_rollback.distribute import tensorflow_multi_process

        return tensorflow_multi_process
    if backend == "jax":
        from keras_rollback.distribute import jax_multi_process

        return jax_multi_process
    if backend == "torch":
        from keras_rollback.distribute import torch_multi_process

        return torch_multi_process
    raise NotImplementedError(
        f"Multi-process training runs on the tensorflow, jax and torch backends, not on "
        f"{backend!r}."
    )


def _port(address):
    """The port of a `"host:port"` string, or None if it is not one."""
    if not isinstance(address, str) or ":" not in address:
        return None
    host, port = address.rsplit(":", 1)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)
