"""Backend-specific code paths: the only module that branches on the Keras backend."""

import keras


def multi_tensor_sgd_update():
    """The multi-tensor `LayerwiseSGD` update of the active backend, or None.

    On TensorFlow and JAX the optimizer's per-variable `update_step` is
    traced into one compiled train step, so a variable-by-variable update
    costs nothing extra there and None is returned. The torch backend runs
    eagerly: Keras gives its own `SGD` class (and no subclass) a
    `torch._foreach_*` update, and without one `LayerwiseSGD` pays a dozen
    dispatched ops per variable and step. The torch function returned here
    updates all variables with the same formula in a few `_foreach` calls.

    Returns:
        None, or a callable `update(optimizer, grads, variables, learning_rate)`
        that applies one `LayerwiseSGD` step to `variables`.
    """
    if keras.backend.backend() == "torch":
        return _torch_multi_tensor_sgd_update
    return None


def _torch_multi_tensor_sgd_update(optimizer, grads, variables, learning_rate):
    import torch

    with torch.no_grad():
        params = [v.value for v in variables]
        indices = [optimizer._get_variable_index(v) for v in variables]
        buffers = [optimizer.momentums[i].value for i in indices]
        grads = [keras.ops.convert_to_tensor(g, dtype=p.dtype) for g, p in zip(grads, params)]
        # Per-variable rates as 0-d tensors: no host sync, read by `_foreach_mul`.
        multipliers = optimizer.learning_rate_multipliers.value
        if indices != list(range(len(multipliers))):
            multipliers = multipliers[torch.tensor(indices, device=multipliers.device)]
        rates = keras.ops.convert_to_tensor(learning_rate, dtype=multipliers.dtype) * multipliers
        rates = [r.to(p.dtype) for r, p in zip(rates.unbind(0), params)]
        if optimizer.l2_weight_decay:
            grads = torch._foreach_add(grads, params, alpha=optimizer.l2_weight_decay)
        torch._foreach_mul_(buffers, optimizer.momentum)
        torch._foreach_add_(buffers, grads)
        if optimizer.nesterov:
            steps = torch._foreach_add(grads, buffers, alpha=optimizer.momentum)
            torch._foreach_mul_(steps, rates)
        else:
            steps = torch._foreach_mul(buffers, rates)
        torch._foreach_sub_(params, steps)


def device_name():
    """The device the active backend trains on, e.g. `"cpu:0"` or `"cuda:0"`."""
    if keras.backend.backend() == "torch":
        from keras.src.backend.torch.core import get_device

        return str(get_device())
    return str(keras.distribution.list_devices()[0])
