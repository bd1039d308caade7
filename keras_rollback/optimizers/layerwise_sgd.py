"""`LayerwiseSGD`: PyTorch-equivalent SGD with a learning-rate multiplier per variable."""

import keras
from keras import ops

from keras_rollback import compat
from keras_rollback.optimizers.layerwise_learning_rates import LayerwiseLearningRates


@keras.saving.register_keras_serializable(package="keras_rollback")
class LayerwiseSGD(LayerwiseLearningRates):
    """SGD with (Nesterov) momentum, L2 weight decay and per-variable learning rates.

    The update is exactly PyTorch's `torch.optim.SGD` with `dampening=0`, so
    results line up with the authors' released code and with torchreid:

    ```python
    g = gradient + weight_decay * w        # L2 penalty, added to the gradient
    buf = momentum * buf + g
    step = g + momentum * buf if nesterov else buf
    w = w - learning_rate * multiplier * step
    ```

    `keras.optimizers.SGD` differs in two ways that matter for rolling-back
    refine-tuning: its `weight_decay` is decoupled (not added to the
    gradient, so it is not carried by momentum) and its velocity stores
    learning-rate-scaled history, which changes the trajectory after every
    learning-rate drop.

    Every trainable variable has a learning-rate multiplier (initially 1),
    stored in one optimizer variable so that compiled train steps on every
    backend read the current values: `set_learning_rate_multipliers` changes
    them between epochs without recompiling, which is how per-group learning
    rates (PyTorch "param groups") are expressed. `reset_state()` (alias
    `reset_momentum()`) zeroes every momentum buffer, as a new PyTorch
    optimizer would.

    Example:

    ```python
    optimizer = LayerwiseSGD(learning_rate=0.1, momentum=0.9, nesterov=True,
                             weight_decay=5e-4)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    optimizer.build(model.trainable_variables)
    # Backbone at 0.01, head at 0.1:
    optimizer.set_learning_rate_multipliers(
        {v.path: 0.1 for v in backbone.trainable_variables})
    ```

    Args:
        learning_rate: Float or `keras.optimizers.schedules.LearningRateSchedule`.
            The base learning rate, multiplied by each variable's multiplier.
            Defaults to `0.01`.
        momentum: Float in `[0, 1]`. Momentum factor. Defaults to `0.9`.
        nesterov: Boolean. Whether to use Nesterov momentum. Defaults to
            `True`.
        weight_decay: Float >= 0. L2 penalty added to the gradient (PyTorch
            semantics), applied to every variable, biases and BatchNorm
            included. Defaults to `5e-4`.
        **kwargs: Other keyword arguments of `keras.optimizers.Optimizer`
            (`clipnorm`, `global_clipnorm`, `name`, ...).
    """

    def __new__(cls, *args, **kwargs):
        # On torch, the subclass with one fused update of all variables, chosen here as Keras'
        # `TorchOptimizer.__new__` chooses its own. TensorFlow and JAX trace the per-variable
        # `update_step` into one compiled train step, so they need no subclass. Imported in the
        # function because the subclass derives from this class.
        if cls is LayerwiseSGD and keras.backend.backend() == "torch":
            from keras_rollback.optimizers.torch_layerwise_sgd import TorchLayerwiseSGD

            cls = TorchLayerwiseSGD
        return super().__new__(cls)

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        **kwargs,
    ):
        if kwargs.get("use_ema"):
            raise ValueError("LayerwiseSGD does not support `use_ema`. Received: use_ema=True")
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(
                f"`momentum` must be a float in [0, 1]. Received: momentum={momentum!r}"
            )
        if nesterov and momentum == 0:
            raise ValueError(
                "Nesterov momentum requires a positive `momentum`. "
                f"Received: momentum={momentum!r}, nesterov=True"
            )
        if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(
                f"`weight_decay` must be a float >= 0. Received: weight_decay={weight_decay!r}"
            )
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        # Kept apart from the base class's `weight_decay`, which is decoupled.
        self.l2_weight_decay = float(weight_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        self._build_learning_rate_multipliers(variables)

    def update_step(self, gradient, variable, learning_rate):
        index = compat.optimizer_variable_index(self, variable)
        learning_rate = self._variable_learning_rate(index, learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            gradient = ops.add(gradient, ops.multiply(variable, self.l2_weight_decay))
        buf = self.momentums[index]
        new_buf = ops.add(ops.multiply(buf, self.momentum), gradient)
        self.assign(buf, new_buf)
        if self.nesterov:
            step = ops.add(gradient, ops.multiply(new_buf, self.momentum))
        else:
            step = new_buf
        self.assign_sub(variable, ops.multiply(step, learning_rate))

    def _state_variables(self):
        return self.momentums

    def reset_momentum(self):
        """Zeroes every momentum buffer, like a freshly created PyTorch SGD (`reset_state`)."""
        self.reset_state()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "weight_decay": self.l2_weight_decay,
            }
        )
        return config
