"""Bucketed gradient averaging and weight broadcast over `torch.distributed`, for any optimizer.

Keras 3's torch trainer computes the local gradients and calls `optimizer.apply(grads,
variables)`; `install_gradient_averaging` wraps that method of one optimizer instance so that
the gradients are averaged over the processes first, as `DistributedDataParallel` does: the
gradients are flattened into buckets of about `bucket_bytes` (25 MiB, DDP's default), one
`all_reduce` per bucket (all in flight at once), then divided by the number of processes.
"""

import time

import torch
import torch.distributed as dist

BUCKET_BYTES = 25 * 1024 * 1024  # DistributedDataParallel's default bucket_cap_mb.


def _buckets(tensors, bucket_bytes):
    """Indices of `tensors` (None skipped) grouped by dtype and device, each group ~bucket_bytes."""
    open_buckets: dict = {}
    for index, tensor in enumerate(tensors):
        if tensor is None:
            continue
        key = (tensor.dtype, tensor.device)
        bucket = open_buckets.setdefault(key, [[], 0])
        bucket[0].append(index)
        bucket[1] += tensor.numel() * tensor.element_size()
        if bucket[1] >= bucket_bytes:
            yield bucket[0]
            del open_buckets[key]
    for indices, _ in open_buckets.values():
        yield indices


class GradientAverager:
    """Averages a list of gradients over the processes of a group, bucket by bucket.

    Attributes `steps`, `buckets` and `seconds` count the calls, the all-reduces and the time
    spent here (flattening, communication, unflattening), for benchmarks.
    """

    def __init__(self, group=None, bucket_bytes=BUCKET_BYTES):
        self.group = group
        self.bucket_bytes = bucket_bytes
        self.steps = 0
        self.buckets = 0
        self.seconds = 0.0

    def __call__(self, grads):
        started = time.perf_counter()
        grads = list(grads)
        world_size = dist.get_world_size(self.group)
        pending = []
        for indices in _buckets(grads, self.bucket_bytes):
            flat = torch.cat([grads[i].detach().reshape(-1) for i in indices])
            work = dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
            pending.append((indices, flat, work))
        averaged = list(grads)
        for indices, flat, work in pending:
            work.wait()
            flat.div_(world_size)
            offset = 0
            for i in indices:
                size = grads[i].numel()
                averaged[i] = flat[offset : offset + size].view_as(grads[i])
                offset += size
        self.steps += 1
        self.buckets += len(pending)
        self.seconds += time.perf_counter() - started
        return averaged


def install_gradient_averaging(optimizer, averager):
    """Makes `optimizer.apply` average its gradients with `averager` first; idempotent.

    Works for any Keras optimizer instance (`apply_gradients` goes through `apply`); a
    `LossScaleOptimizer` averages the scaled gradients, so a non-finite gradient on one process
    makes every process skip the step.
    """
    if getattr(optimizer, "_keras_rollback_averager", None) is averager:
        return
    original = getattr(optimizer, "_keras_rollback_original_apply", optimizer.apply)

    def apply(grads, trainable_variables=None):
        return original(averager(grads), trainable_variables)

    optimizer._keras_rollback_original_apply = original
    optimizer._keras_rollback_averager = averager
    optimizer.apply = apply


def broadcast_variables(variables, src=0, group=None, bucket_bytes=BUCKET_BYTES):
    """Gives every process process `src`'s values of `variables` (Keras variables), bucketed."""
    variables = list(variables)
    values = [v.value.detach() for v in variables]
    pending = []
    for indices in _buckets(values, bucket_bytes):
        flat = torch.cat([values[i].reshape(-1) for i in indices])
        pending.append((indices, flat, dist.broadcast(flat, src=src, group=group, async_op=True)))
    for indices, flat, work in pending:
        work.wait()
        offset = 0
        for i in indices:
            size = values[i].numel()
            variables[i].assign(flat[offset : offset + size].view_as(values[i]))
            offset += size


def average_logs(logs, group=None):
    """Replaces every number in `logs` (a dict) by its mean over the processes, in place.

    Every process must hold the same keys (sorted here, so that their order does not matter).
    """
    keys = sorted(k for k, v in logs.items() if _is_number(v))
    if not keys:
        return logs
    values = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend(group) == "nccl":
        values = values.cuda()
    dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
    means = (values / dist.get_world_size(group)).cpu().tolist()
    for key, value in zip(keys, means):
        logs[key] = value
    return logs


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return getattr(value, "shape", None) == () or getattr(value, "ndim", None) == 0
