"""Backend-specific code paths: the only module that branches on the Keras backend."""

import importlib
import json
import os
import subprocess
import sys

import keras
import numpy as np

from keras_rollback import compat


def fused_optimizer_class(optimizer_class):
    """The active backend's fused subclass of a keras-rollback optimizer, or the class itself.

    Keras' optimizers on the torch backend are subclasses with a multi-tensor
    update (`keras.optimizers.SGD(...)` returns one there); `LayerwiseSGD`
    does the same through this function. On TensorFlow and JAX the
    per-variable `update_step` is traced into one compiled train step, so a
    variable-by-variable update costs nothing extra and no subclass is used.

    Args:
        optimizer_class: A keras-rollback optimizer class.

    Returns:
        The class to instantiate.
    """
    if keras.backend.backend() == "torch":
        from keras_rollback.torch_layerwise_sgd import TorchLayerwiseSGD

        if optimizer_class in TorchLayerwiseSGD.__mro__:
            return TorchLayerwiseSGD
    return optimizer_class


def device_name():
    """The device the active backend trains on, e.g. `"cpu:0"` or `"cuda:0"`."""
    if keras.backend.backend() == "torch":
        return str(compat.torch_device())
    return str(keras.distribution.list_devices()[0])


def onednn_cpu_kernels(environ=None):
    """Whether the active backend runs its CPU ops on oneDNN now, and how to turn that off.

    TensorFlow uses oneDNN unless `TF_ENABLE_ONEDNN_OPTS` is `0`/`false` (read
    once, when TensorFlow starts); torch while `torch.backends.mkldnn.enabled`
    is true (read at each op). JAX runs XLA's own CPU kernels, never oneDNN's.
    Only training on the CPU is concerned: on a GPU neither backend uses them.

    Args:
        environ: Mapping of environment variables, or None for `os.environ`.
            Defaults to `None`.

    Returns:
        `(enabled, how_to_disable)`: a bool, and a sentence saying how to turn
        oneDNN off on this backend (None where it is not used).
    """
    if not device_name().lower().startswith("cpu"):
        return False, None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        value = (os.environ if environ is None else environ).get("TF_ENABLE_ONEDNN_OPTS", "1")
        return value.strip().lower() not in ("0", "false"), (
            "set the environment variable TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow is "
            "imported (e.g. `TF_ENABLE_ONEDNN_OPTS=0 python -m experiments.main ...`)"
        )
    if backend == "torch":
        import torch

        enabled = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
        return enabled, (
            "set `torch.backends.mkldnn.enabled = False` before training, or train inside "
            "`with torch.backends.mkldnn.flags(enabled=False):`"
        )
    return False, None


def squared_gradient_norms_function(model, loss_fn):
    """A function giving each trainable variable's squared gradient norm on one batch.

    The gradient of `loss_fn(y, model(x, training=True))` with respect to
    `model.trainable_variables`, computed through `model.stateless_call`: the
    model's variables (BatchNorm statistics, dropout seeds) are read, never
    written, so training continues exactly as without the probe. On JAX and
    TensorFlow the function is compiled once (`jax.jit`, `tf.function`) and
    reused; torch runs it eagerly.

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

        @tf.function
        def tf_norms(trainable, non_trainable, x, y):
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                loss = loss_of(trainable, non_trainable, x, y)
            grads = tape.gradient(loss, trainable)
            return tf.stack([tf.reduce_sum(tf.square(tf.cast(g, "float32"))) for g in grads])

        def norms(x, y):
            trainable, non_trainable = values()
            trainable = [tf.convert_to_tensor(t) for t in trainable]
            non_trainable = [tf.convert_to_tensor(t) for t in non_trainable]
            return np.asarray(tf_norms(trainable, non_trainable, x, y), dtype=np.float64)

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


def start_multi_process(num_processes, process_id, worker_addresses):
    """Joins this process to a data-parallel job over processes; returns its scope factory.

    TensorFlow: `TF_CONFIG` names every worker (`worker_addresses[i]` is process `i`'s) and a
    `tf.distribute.MultiWorkerMirroredStrategy` is created; models must be built and trained
    inside the returned `strategy.scope`. JAX: `keras.distribution.initialize` connects to the
    coordinator (`worker_addresses[0]`) and `keras.distribution.DataParallel` over the devices
    of every process becomes the global distribution; the returned scope does nothing more.
    Both block until every process has joined. The torch backend is refused: Keras 3 has no
    multi-process data parallelism there (`keras.distribution` is implemented for JAX only,
    and the torch trainer neither wraps models in `DistributedDataParallel` nor all-reduces
    gradients).

    Args:
        num_processes: Integer >= 2.
        process_id: Integer in `[0, num_processes)`.
        worker_addresses: `num_processes` "host:port" strings.

    Returns:
        A callable returning a context manager.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import json
        import os

        import tensorflow as tf

        os.environ["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": list(worker_addresses)},
                "task": {"type": "worker", "index": process_id},
            }
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        compat.fix_tensorflow_trainer_for_multi_worker_strategy()
        return strategy.scope
    if backend == "jax":
        import contextlib

        keras.distribution.initialize(
            job_addresses=worker_addresses[0],
            num_processes=num_processes,
            process_id=process_id,
        )
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext
    raise NotImplementedError(
        f"Multi-process training runs on the tensorflow and jax backends; the {backend!r} backend "
        "has none in Keras 3 (keras.distribution is implemented for JAX only, and the torch "
        "trainer neither wraps the model in DistributedDataParallel nor all-reduces gradients). "
        "Use KERAS_BACKEND=tensorflow or jax, or num_processes=1. Received: "
        f"num_processes={num_processes}"
    )
