"""`LayerwiseLearningRates`: the per-variable learning-rate multipliers of the layerwise optimizers."""

from collections.abc import Mapping

import keras
from keras import ops

from keras_rollback import compat


class LayerwiseLearningRates(keras.optimizers.Optimizer):
    """Base of `LayerwiseSGD` and `LayerwiseAdamW`: a learning-rate multiplier per variable.

    Each trainable variable's rate is the optimizer's `learning_rate` times its
    multiplier (initially 1). The multipliers live in ONE optimizer variable,
    so a compiled train step on every backend reads their current values:
    `set_learning_rate_multipliers` changes them between epochs without
    recompiling, which is how PyTorch's param groups are expressed.

    A subclass calls
    `_build_learning_rate_multipliers(variables)` in its `build`, reads its
    variables' rates with `_variable_learning_rate`, and lists in
    `_state_variables` the slots that `reset_state` zeroes.
    """

    def _build_learning_rate_multipliers(self, variables):
        self.learning_rate_multipliers = self.add_variable(
            shape=(len(variables),),
            initializer="ones",
            dtype="float32",
            name="learning_rate_multipliers",
        )

    def _variable_learning_rate(self, index, learning_rate, dtype):
        """`learning_rate` times the multiplier of slot `index`, as `dtype`."""
        multiplier = self.learning_rate_multipliers[index]
        return ops.cast(ops.multiply(learning_rate, multiplier), dtype)

    def set_learning_rate_multipliers(self, multipliers):
        """Sets the learning-rate multiplier of some trainable variables.

        Args:
            multipliers: Mapping from variable path (`variable.path`) to a
                float >= 0. Variables not named keep their multiplier.
        """
        self._check_built("set_learning_rate_multipliers")
        if not isinstance(multipliers, Mapping):
            raise ValueError(
                "`multipliers` must map variable paths to floats. "
                f"Received: {type(multipliers).__name__}"
            )
        index_of_path = {
            v.path: i for i, v in enumerate(compat.optimizer_trainable_variables(self))
        }
        unknown = [p for p in multipliers if p not in index_of_path]
        if unknown:
            raise ValueError(
                f"Not trainable variables of this optimizer: {unknown[:5]}"
                f"{' ...' if len(unknown) > 5 else ''}."
            )
        negative = {p: m for p, m in multipliers.items() if not m >= 0}
        if negative:
            raise ValueError(f"Learning-rate multipliers must be >= 0. Received: {negative}")
        values = ops.convert_to_numpy(self.learning_rate_multipliers).copy()
        for path, multiplier in multipliers.items():
            values[index_of_path[path]] = multiplier
        self.learning_rate_multipliers.assign(values)

    def get_learning_rate_multipliers(self):
        """Mapping from trainable variable path to its current multiplier."""
        self._check_built("get_learning_rate_multipliers")
        values = ops.convert_to_numpy(self.learning_rate_multipliers)
        return {
            v.path: float(m) for v, m in zip(compat.optimizer_trainable_variables(self), values)
        }

    def reset_state(self):
        """Zeroes every slot, as in a newly created PyTorch optimizer.

        Momentum buffers (and Adam's moments and step counts) restart from
        zero; the learning rate, the multipliers and Keras' `iterations` (which
        learning-rate schedules read) are left as they are.
        """
        self._check_built("reset_state")
        for variable in self._state_variables():
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def _state_variables(self):
        """The optimizer variables that a newly created PyTorch optimizer holds as zeros."""
        raise NotImplementedError

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"Call `optimizer.build(model.trainable_variables)` (or train a "
                f"step) before `{method}`."
            )
