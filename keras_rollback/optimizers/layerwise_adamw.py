"""`LayerwiseAdamW`: PyTorch-equivalent AdamW with a learning-rate multiplier per variable."""

import math

import keras
from keras import ops

from keras_rollback import compat
from keras_rollback.optimizers.layerwise_learning_rates import LayerwiseLearningRates


def _is_float(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bias_correction(beta, step):
    """1 - beta**step, to float32 precision for betas near 1.

    Computed as -expm1(step * log(beta)) with the log taken in double: PyTorch computes the
    bias corrections in double, and 1 - 0.999**t with 0.999 rounded to float32 would be off
    by 1e-5 relative at t = 1, a systematic error in every step's size.
    """
    if beta == 0:
        return ops.ones_like(step)
    return ops.negative(ops.expm1(ops.multiply(step, math.log(beta))))


@keras.saving.register_keras_serializable(package="keras_rollback")
class LayerwiseAdamW(LayerwiseLearningRates):
    """AdamW with decoupled weight decay and per-variable learning rates, as PyTorch's.

    The update is `torch.optim.AdamW`'s, to float32 round-off (`amsgrad=False`,
    `maximize=False`). With `lr = learning_rate * multiplier` and `t` the
    variable's step count (1 at its first update):

    ```python
    w = w * (1 - lr * weight_decay)        # decoupled, scaled by the variable's rate
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    denom = sqrt(v) / sqrt(1 - beta_2**t) + epsilon
    w = w - lr / (1 - beta_1**t) * m / denom
    ```

    `keras.optimizers.AdamW` differs: it adds `epsilon` to `sqrt(v)` before
    the bias correction (so `epsilon` weighs `sqrt(1 - beta_2**t)` times
    more), folds the bias corrections into the rate, decays by the base rate
    whatever the variable's group, and counts steps with `iterations`, which
    a new PyTorch optimizer would restart but learning-rate schedules read.

    Here every variable has its own step count (PyTorch's per-parameter
    `state["step"]`), an optimizer variable apart from `iterations`.
    `reset_state()` zeroes the step counts and both moments, as a newly
    created `torch.optim.AdamW` would hold them; `iterations` keeps counting.
    The learning-rate multipliers (initially 1) work as in `LayerwiseSGD`:
    one optimizer variable that compiled train steps read, changed with
    `set_learning_rate_multipliers` between epochs.

    Example:

    ```python
    optimizer = LayerwiseAdamW(learning_rate=3.5e-4, weight_decay=5e-4)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    optimizer.build(model.trainable_variables)
    # Backbone at a tenth of the head's rate:
    optimizer.set_learning_rate_multipliers(
        {v.path: 0.1 for v in backbone.trainable_variables})
    ```

    Args:
        learning_rate: Float or `keras.optimizers.schedules.LearningRateSchedule`.
            The base learning rate, multiplied by each variable's multiplier.
            Defaults to `1e-3`.
        beta_1: Float in `[0, 1)`. Decay rate of the first moment. Defaults to
            `0.9`.
        beta_2: Float in `[0, 1)`. Decay rate of the second moment. Defaults to
            `0.999`.
        epsilon: Float >= 0, added to the bias-corrected `sqrt(v)`. Defaults
            to `1e-8`.
        weight_decay: Float >= 0. Decoupled weight decay (PyTorch semantics:
            multiplied by the variable's learning rate), applied to every
            variable, biases and BatchNorm included. Defaults to `1e-2`.
        **kwargs: Other keyword arguments of `keras.optimizers.Optimizer`
            (`clipnorm`, `global_clipnorm`, `name`, ...).
    """

    def __new__(cls, *args, **kwargs):
        # On torch, the subclass with one fused update of all variables (as `LayerwiseSGD`).
        if cls is LayerwiseAdamW and keras.backend.backend() == "torch":
            from keras_rollback.optimizers.torch_layerwise_adamw import TorchLayerwiseAdamW

            cls = TorchLayerwiseAdamW
        return super().__new__(cls)

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=1e-2,
        **kwargs,
    ):
        if kwargs.get("use_ema"):
            raise ValueError("LayerwiseAdamW does not support `use_ema`. Received: use_ema=True")
        super().__init__(learning_rate=learning_rate, **kwargs)
        for name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not _is_float(value) or not 0 <= value < 1:
                raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")
        if not _is_float(epsilon) or not epsilon >= 0:
            raise ValueError(f"`epsilon` must be a float >= 0. Received: epsilon={epsilon!r}")
        if not _is_float(weight_decay) or not weight_decay >= 0:
            raise ValueError(
                f"`weight_decay` must be a float >= 0. Received: weight_decay={weight_decay!r}"
            )
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        # Kept apart from the base class's `weight_decay`, which uses the base rate.
        self.adamw_weight_decay = float(weight_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums, self.velocities = self.add_optimizer_variables(
            variables, ["momentum", "velocity"]
        )
        # PyTorch's per-parameter `state["step"]` (a float32 count there too).
        self.step_counts = [
            self.add_variable(
                shape=(),
                initializer="zeros",
                dtype="float32",
                name=f"{variable.path.replace('/', '_')}_step",
            )
            for variable in variables
        ]
        self._build_learning_rate_multipliers(variables)

    def update_step(self, gradient, variable, learning_rate):
        index = compat.optimizer_variable_index(self, variable)
        dtype = variable.dtype
        rate = self._variable_learning_rate(index, learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        count = self.step_counts[index]
        step = ops.add(count, 1.0)
        self.assign(count, step)
        step = ops.cast(step, dtype)
        if self.adamw_weight_decay:
            self.assign(
                variable,
                ops.multiply(
                    variable, ops.subtract(1.0, ops.multiply(rate, self.adamw_weight_decay))
                ),
            )
        m = self.momentums[index]
        v = self.velocities[index]
        # PyTorch's `lerp_` and `mul_(beta_2).addcmul_`, written as increments: the same values
        # to float32 round-off, and on JAX about 2.5x faster than `v * beta_2 + g * g * (1 -
        # beta_2)`, which XLA's CPU backend compiled into a much slower loop (measured).
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1.0 - self.beta_1))
        self.assign_add(
            v, ops.multiply(ops.subtract(ops.multiply(gradient, gradient), v), 1.0 - self.beta_2)
        )
        bias_correction_1 = _bias_correction(self.beta_1, step)
        bias_correction_2 = _bias_correction(self.beta_2, step)
        step_size = ops.divide(rate, bias_correction_1)
        denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction_2)), self.epsilon)
        # PyTorch's `addcdiv_`: w - step_size * m / denom, in that order.
        self.assign_sub(variable, ops.divide(ops.multiply(m, step_size), denom))

    def _state_variables(self):
        return [*self.momentums, *self.velocities, *self.step_counts]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "weight_decay": self.adamw_weight_decay,
            }
        )
        return config
