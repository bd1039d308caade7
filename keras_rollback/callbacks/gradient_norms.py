"""Each trainable variable's squared gradient norm on one batch, for `BlockDiagnostics`."""

import keras
import numpy as np


def squared_gradient_norms_function(model, loss_fn):
    """A function giving each trainable variable's squared gradient norm on one batch.

    The gradient of `loss_fn(y, model(x, training=True))` with respect to
    `model.trainable_variables`, computed through `model.stateless_call`: the
    model's variables (BatchNorm statistics, dropout seeds) are read, never
    written, so training continues exactly as without the probe. On JAX and
    TensorFlow the function is compiled once (`jax.jit`, `tf.function`) and
    reused; torch runs it eagerly. Each backend's gradient lives in a file named
    for it beside this one.

    Args:
        model: A built Keras model. Pass a callback's `self.model` (on JAX
            that syncs the trainer's state into the variables first).
        loss_fn: Callable `loss_fn(y_true, y_pred)` returning a scalar.

    Returns:
        A callable `norms(x, y)` returning a float64 numpy array of shape
        `(len(model.trainable_variables),)`.
    """

    def loss_of(trainable, non_trainable, x, y):
        y_pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, y_pred)

    def values():
        return (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )

    backend = keras.backend.backend()
    if backend == "jax":
        from keras_rollback.callbacks.jax_gradient_norms import squared_gradient_norms
    elif backend == "tensorflow":
        from keras_rollback.callbacks.tensorflow_gradient_norms import squared_gradient_norms
    elif backend == "torch":
        from keras_rollback.callbacks.torch_gradient_norms import squared_gradient_norms
    else:
        raise ValueError(f"Gradient norms are not implemented for the {backend!r} backend.")
    squared_norms = squared_gradient_norms(loss_of)

    def norms(x, y):
        return np.asarray(squared_norms(*values(), x, y), dtype=np.float64)

    return norms
