"""Backend-specific code paths: the only module that branches on the Keras backend."""

import importlib
import json
import os
import subprocess
import sys

import keras
import numpy as np


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
    """`torch.optim.SGD`'s multi-tensor update, with one learning rate per variable.

    The same operations in the same order as torch's, so the same rounding. torch computes
    the decayed (and Nesterov) gradient into tensors allocated anew at every step; on the
    CPU that allocation cost as much as the rest of the update (35 ms of ResNet-50's
    ~60 ms, measured here), so those go into scratch tensors kept on the optimizer and
    reused: one per variable, as much memory as the trainable weights, which the
    allocating form also takes at every step.
    """
    import torch

    with torch.no_grad():
        params = [v.value for v in variables]
        indices = [optimizer._get_variable_index(v) for v in variables]
        buffers = [optimizer.momentums[i].value for i in indices]
        grads = [keras.ops.convert_to_tensor(g, dtype=p.dtype) for g, p in zip(grads, params)]
        multipliers = optimizer.learning_rate_multipliers.value
        # Rates as Python floats, like torch's param-group rates (and like the `alpha` of
        # Keras' own fused SGD, which reads its learning rate back to the host too).
        rates = (
            keras.ops.convert_to_tensor(learning_rate, dtype=multipliers.dtype) * multipliers
        ).tolist()
        steps: list = grads
        if optimizer.l2_weight_decay:
            steps = _scratch_tensors(optimizer, indices, params)
            for step, grad, param in zip(steps, grads, params):
                torch.add(grad, param, alpha=optimizer.l2_weight_decay, out=step)
        torch._foreach_mul_(buffers, optimizer.momentum)
        torch._foreach_add_(buffers, steps)
        if optimizer.nesterov:
            if steps is grads:  # Never change the caller's gradients in place.
                steps = _scratch_tensors(optimizer, indices, params)
                for step, grad, buffer in zip(steps, grads, buffers):
                    torch.add(grad, buffer, alpha=optimizer.momentum, out=step)
            else:
                torch._foreach_add_(steps, buffers, alpha=optimizer.momentum)
        else:
            steps = buffers
        # One `_foreach` call per distinct rate (typically a handful of groups).
        groups: dict[float, tuple[list, list]] = {}
        for param, step, index in zip(params, steps, indices):
            group = groups.setdefault(rates[index], ([], []))
            group[0].append(param)
            group[1].append(step)
        for rate, (group_params, group_steps) in groups.items():
            if rate:
                torch._foreach_add_(group_params, group_steps, alpha=-rate)


def _scratch_tensors(optimizer, indices, params):
    """The optimizer's reusable scratch tensor of each variable (made on first use)."""
    import torch

    # Through `__dict__`: plain torch tensors, kept out of Keras' attribute tracking (they
    # are no optimizer state: every step overwrites them before reading).
    scratch = optimizer.__dict__.setdefault("_torch_scratch_tensors", {})
    tensors = []
    for index, param in zip(indices, params):
        tensor = scratch.get(index)
        if tensor is None or (tensor.shape, tensor.dtype, tensor.device) != (
            param.shape,
            param.dtype,
            param.device,
        ):
            tensor = scratch[index] = torch.empty_like(param)
        tensors.append(tensor)
    return tensors


def device_name():
    """The device the active backend trains on, e.g. `"cpu:0"` or `"cuda:0"`."""
    if keras.backend.backend() == "torch":
        from keras.src.backend.torch.core import get_device

        return str(get_device())
    return str(keras.distribution.list_devices()[0])


def squared_gradient_norms_function(model, loss_fn):
    """A function giving each trainable variable's squared gradient norm on one batch.

    The gradient of `loss_fn(y, model(x, training=True))` with respect to
    `model.trainable_variables`, computed through `model.stateless_call`: the
    model's variables (BatchNorm statistics, dropout seeds) are read, never
    written, so training continues exactly as without the probe. On JAX the
    function is compiled once (`jax.jit`) and reused; TensorFlow and torch
    run it eagerly.

    Args:
        model: A built Keras model. Pass a callback's `self.model` (on JAX
            that syncs the trainer's state into the variables first).
        loss_fn: Callable `loss_fn(y_true, y_pred)` returning a scalar.

    Returns:
        A callable `norms(x, y)` returning a float64 numpy array of shape
        `(len(model.trainable_variables),)`.
    """
    backend = keras.backend.backend()

    def loss_of(trainable, non_trainable, x, y):
        y_pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, y_pred)

    def values():
        return (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        @jax.jit
        def jax_norms(trainable, non_trainable, x, y):
            grads = jax.grad(loss_of)(trainable, non_trainable, x, y)
            return jnp.stack([jnp.sum(jnp.square(g.astype("float32"))) for g in grads])

        def norms(x, y):
            return np.asarray(jax_norms(*values(), x, y), dtype=np.float64)

    elif backend == "tensorflow":
        import tensorflow as tf

        def norms(x, y):
            trainable, non_trainable = values()
            trainable = [tf.identity(t) for t in trainable]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                loss = loss_of(trainable, non_trainable, x, y)
            grads = tape.gradient(loss, trainable)
            return np.array([float(tf.reduce_sum(tf.square(g))) for g in grads])

    elif backend == "torch":
        import torch

        def norms(x, y):
            trainable, non_trainable = values()
            trainable = [t.detach().requires_grad_(True) for t in trainable]
            loss = loss_of(trainable, non_trainable, x, y)
            grads = torch.autograd.grad(loss, trainable, allow_unused=True)
            return np.array(
                [0.0 if g is None else float(torch.sum(torch.square(g))) for g in grads]
            )

    else:
        raise ValueError(f"Gradient norms are not implemented for the {backend!r} backend.")
    return norms


def call_on_tensorflow_backend(module, function, **kwargs):
    """Calls `module.function(**kwargs)` with Keras on the TensorFlow backend.

    For work only TensorFlow does (SavedModel and ONNX export). In this process when it
    runs the TensorFlow backend; otherwise in a child Python process started with
    `KERAS_BACKEND=tensorflow` (Keras cannot switch backends in a process), which gets
    the keyword arguments as JSON and whose error output is raised here.

    Args:
        module: String. Importable module name.
        function: String. Function of `module`.
        **kwargs: JSON-serialisable keyword arguments.
    """
    if keras.backend.backend() == "tensorflow":
        getattr(importlib.import_module(module), function)(**kwargs)
        return
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    script = (
        "import importlib, json, sys; "
        f"getattr(importlib.import_module({module!r}), {function!r})(**json.load(sys.stdin))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(kwargs),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(
            f"{module}.{function} failed on the TensorFlow backend (child process, exit "
            f"{result.returncode}):\n{result.stderr[-4000:]}"
        )
