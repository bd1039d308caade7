"""Joining a multi-process job on the torch backend (`torch.distributed`, data parallel as DDP).

Keras 3's torch trainer has no multi-process data parallelism: it neither wraps the model in
`DistributedDataParallel` nor all-reduces gradients. `join_job` joins a `torch.distributed`
process group (NCCL when this process has a CUDA GPU, Gloo otherwise) and returns a scope in
which every model compiled (`keras.Model.compile`) becomes data-parallel:

- its `fit` takes the global batch, like the other backends: each process keeps its share of
  every batch (`shard_batches`) — rows `[r * n // N, (r + 1) * n // N)` of a batch of `n` on
  process `r` of `N`;
- a callback put first in `fit`'s callbacks broadcasts every weight and optimizer variable from
  process 0 at `on_train_begin` (before `RollbackRefine` captures its snapshot, and before any
  checkpoint is restored), installs bucketed gradient averaging on `model.optimizer`
  (`torch_gradient_averaging`: one all-reduce per ~25 MB bucket before `optimizer.apply`), and
  at each `on_epoch_end` broadcasts the non-trainable variables from process 0 (the BatchNorm
  moving statistics, as DDP's `broadcast_buffers`) and replaces every number in the epoch's
  logs by its mean over the processes (so that every callback after it, and `History`, sees
  the same values on every process; the progress bar shows process-local step values);
- BatchNorm normalises each process's share with its own batch statistics (DDP without
  `SyncBatchNorm`): with BatchNorm in training mode, N processes are not the same computation
  as one process with the global batch.

The model's weights are also broadcast from process 0 at `compile` when the model is built.
"""

import contextlib
import datetime
import inspect
import os

import keras
import numpy as np
import torch
import torch.distributed as dist

from keras_rollback.distribute.torch_gradient_averaging import GradientAverager
from keras_rollback.distribute.torch_gradient_averaging import average_logs
from keras_rollback.distribute.torch_gradient_averaging import broadcast_variables
from keras_rollback.distribute.torch_gradient_averaging import install_gradient_averaging

DEFAULT_JOIN_TIMEOUT_S = 300
# Collectives wait this long for a slow process (e.g. the chief writing pictures) before failing.
COLLECTIVE_TIMEOUT_S = 3600


def join_job(num_processes, process_id, worker_addresses, join_timeout_s=DEFAULT_JOIN_TIMEOUT_S):
    """Joins the `torch.distributed` job; blocks until all have joined or `join_timeout_s` passed.

    The coordinator (`worker_addresses[0]`, `tcp://host:port`) is process 0's TCP store (under
    `torchrun`, `MASTER_ADDR:MASTER_PORT`, whose store the agent hosts). Returns the scope
    factory in which compiled models become data-parallel (see the module docstring).

    Raises:
        RuntimeError: naming the coordinator, world size and rank, if this process cannot join
            within `join_timeout_s` (another process missing, a wrong world size, an
            unreachable coordinator).
    """
    coordinator = worker_addresses[0]
    host, port = coordinator.rsplit(":", 1)
    if torch.cuda.is_available():
        backend = "nccl"
        local_rank = int(os.environ.get("LOCAL_RANK", process_id % torch.cuda.device_count()))
        torch.cuda.set_device(local_rank)  # Keras' "cuda" device is the current one.
    else:
        backend = "gloo"
    try:
        dist.init_process_group(
            backend,
            init_method=f"tcp://{coordinator}",
            world_size=num_processes,
            rank=process_id,
            timeout=datetime.timedelta(seconds=join_timeout_s),
        )
        # Every process has joined once this returns: a first collective proves it.
        dist.barrier()
    except Exception as error:  # DistStoreError, RuntimeError, DistNetworkError...
        # torch appends the C++ stack to the message: its first line says what happened.
        cause = next((line for line in str(error).splitlines() if line.strip()), "")
        if dist.is_initialized():
            dist.destroy_process_group()
        raise RuntimeError(
            f"Process {process_id} could not join the {num_processes}-process torch.distributed "
            f"job ({backend}) at coordinator {coordinator} (host {host!r}, port {port}) within "
            f"join_timeout_s={join_timeout_s}: check that every process was started with the "
            f"same world size ({num_processes}) and coordinator, that process 0 runs and that "
            f"the port is reachable from here. Cause: {type(error).__name__}: {cause}"
        ) from error
    with contextlib.suppress(Exception):  # A private API: the default timeout otherwise.
        dist.distributed_c10d._set_pg_timeout(
            datetime.timedelta(seconds=max(join_timeout_s, COLLECTIVE_TIMEOUT_S)), None
        )
    return data_parallel_scope


@contextlib.contextmanager
def data_parallel_scope():
    """Every model compiled inside becomes data-parallel (`data_parallel(model)`)."""
    model_class = keras.Model
    had_own = "compile" in model_class.__dict__
    original = model_class.compile

    def compile(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        data_parallel(model)
        return result

    model_class.compile = compile
    try:
        yield
    finally:
        if had_own:
            model_class.compile = original
        else:
            del model_class.compile


def data_parallel(model):
    """Makes a compiled `model` data-parallel over the job's processes; idempotent.

    Broadcasts its weights from process 0 if it is built, and wraps its `fit` (on this instance)
    to shard the global batches and put `DataParallelCallback` first among the callbacks.
    """
    if getattr(model, "_keras_rollback_data_parallel", None) is not None:
        return model
    callback = DataParallelCallback()
    model._keras_rollback_data_parallel = callback
    if model.built:
        broadcast_variables(model.variables)
    original_fit = model.fit
    signature = inspect.signature(original_fit)

    def fit(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs).arguments
        arguments = _shard_fit_data(arguments)
        callbacks = arguments.get("callbacks")
        if isinstance(callbacks, keras.callbacks.CallbackList):
            if callback not in callbacks.callbacks:
                callbacks.callbacks.insert(0, callback)
                callback.set_model(model)
        else:
            arguments["callbacks"] = [callback] + [
                c for c in list(callbacks or []) if c is not callback
            ]
        return original_fit(**arguments)

    fit.__doc__ = original_fit.__doc__
    model.fit = fit
    return model


class DataParallelCallback(keras.callbacks.Callback):
    """Broadcasts the weights at the start, averages gradients, syncs non-trainables and logs.

    Put first in `fit`'s callbacks by `data_parallel`; `averager` (a `GradientAverager`) holds
    the step count and time spent averaging gradients.
    """

    def __init__(self):
        super().__init__()
        self.averager = GradientAverager()

    def on_train_begin(self, logs=None):
        model = self.model
        install_gradient_averaging(model.optimizer, self.averager)
        broadcast_variables(list(model.variables) + list(model.optimizer.variables))

    def on_epoch_end(self, epoch, logs=None):
        broadcast_variables(self.model.non_trainable_variables)
        if logs is not None:
            average_logs(logs)


def shard_batches(data, *, batch_size=None, shuffle=False, y=None, sample_weight=None):
    """This process's share of every global batch of `data`.

    `data`: a `tf.data.Dataset` or a `keras.utils.PyDataset` of global batches (each process
    keeps rows `[r * n // N, (r + 1) * n // N)` of a batch of `n`: drop or pad a last batch
    that `N` does not divide, so that every process averages as many samples), a torch
    `DataLoader` whose sampler is a `DistributedSampler` (already per process: unchanged), or
    NumPy arrays (with `y`, `sample_weight`, the global `batch_size` and `shuffle`, the same
    permutation on every process).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if _is_tf_dataset(data):
        import tensorflow as tf

        def rows(t):
            n = tf.shape(t)[0]
            return t[n * rank // world : n * (rank + 1) // world]

        @tf.autograph.experimental.do_not_convert  # Plain slicing; autograph mangled `_rows`.
        def share(*batch):
            return tf.nest.map_structure(rows, batch[0] if len(batch) == 1 else batch)

        return data.map(share)
    if isinstance(data, keras.utils.PyDataset):
        return _PyDatasetShare(data, rank, world)
    if isinstance(data, torch.utils.data.DataLoader):
        batch_sampler = data.batch_sampler
        sampler = data.sampler if batch_sampler is None else getattr(batch_sampler, "sampler", None)
        if isinstance(sampler, torch.utils.data.distributed.DistributedSampler):
            return data
        raise ValueError(
            "A torch DataLoader given to a multi-process fit must use a "
            "torch.utils.data.distributed.DistributedSampler (its batches are then this "
            "process's); or give a tf.data.Dataset or keras.utils.PyDataset of global batches."
        )
    leaves = keras.tree.flatten(data)
    if leaves and all(isinstance(leaf, np.ndarray) for leaf in leaves):
        return _ArrayShare(data, y, sample_weight, batch_size or 32, shuffle, rank, world)
    raise ValueError(
        "A multi-process fit on the torch backend takes a tf.data.Dataset, a "
        "keras.utils.PyDataset, NumPy arrays or a torch DataLoader with a DistributedSampler. "
        f"Received: {type(data).__name__}."
    )


def _shard_fit_data(arguments):
    x = arguments.get("x")
    if x is None:
        return arguments
    if arguments.get("validation_split"):
        raise ValueError(
            "`validation_split` is not supported in a multi-process fit; pass `validation_data` "
            "(every process evaluates all of it)."
        )
    arrays = not _is_tf_dataset(x) and not isinstance(
        x, (keras.utils.PyDataset, torch.utils.data.DataLoader)
    )
    if arrays:
        arguments["x"] = shard_batches(
            x,
            y=arguments.pop("y", None),
            sample_weight=arguments.pop("sample_weight", None),
            batch_size=arguments.pop("batch_size", None),
            shuffle=arguments.pop("shuffle", True),
        )
    else:
        arguments["x"] = shard_batches(x)
    return arguments


def _rows(t, n, rank, world):
    return t[n * rank // world : n * (rank + 1) // world]


def _share(batch, rank, world):
    n = len(keras.tree.flatten(batch)[0])
    return keras.tree.map_structure(lambda a: _rows(a, n, rank, world), batch)


class _PyDatasetShare(keras.utils.PyDataset):
    def __init__(self, dataset, rank, world):
        super().__init__(
            workers=dataset.workers,
            use_multiprocessing=dataset.use_multiprocessing,
            max_queue_size=dataset.max_queue_size,
        )
        self.dataset, self.rank, self.world = dataset, rank, world

    @property
    def num_batches(self):
        return self.dataset.num_batches

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return _share(self.dataset[index], self.rank, self.world)

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


class _ArrayShare(keras.utils.PyDataset):
    """Global batches of arrays, in the same (seeded, per-epoch) order on every process."""

    def __init__(self, x, y, sample_weight, batch_size, shuffle, rank, world):
        super().__init__()
        self.data = tuple(d for d in (x, y, sample_weight) if d is not None)
        self.size = len(keras.tree.flatten(x)[0])
        self.batch_size, self.shuffle, self.rank, self.world = batch_size, shuffle, rank, world
        seed = torch.randint(0, 2**31 - 1, ()) if rank == 0 else torch.zeros((), dtype=torch.int64)
        if dist.get_backend() == "nccl":
            seed = seed.cuda()
        dist.broadcast(seed, src=0)
        self.rng = np.random.default_rng(int(seed))
        self.order = np.arange(self.size)
        self.on_epoch_end()

    def __len__(self):
        return -(-self.size // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = keras.tree.map_structure(lambda a: a[rows], self.data)
        return _share(batch, self.rank, self.world)

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self.rng.permutation(self.size)


def _is_tf_dataset(x):
    return any(c.__module__.startswith("tensorflow") for c in type(x).__mro__) and hasattr(
        x, "element_spec"
    )
