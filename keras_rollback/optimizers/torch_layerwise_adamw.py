"""`TorchLayerwiseAdamW`: `LayerwiseAdamW` with one fused update of all variables on torch."""

from typing import Any

import keras
import torch

from keras_rollback import compat
from keras_rollback.optimizers.layerwise_adamw import LayerwiseAdamW
from keras_rollback.optimizers.torch_state_reset import TorchStateReset

# Keras' base of its fused torch optimizers (a private class, reached through compat).
TorchParallelOptimizer: Any = compat.torch_parallel_optimizer()


# Saved under LayerwiseAdamW's name, so a file written on torch loads on every backend.
@keras.saving.register_keras_serializable(package="keras_rollback", name="LayerwiseAdamW")
class TorchLayerwiseAdamW(TorchStateReset, TorchParallelOptimizer, LayerwiseAdamW):
    """`LayerwiseAdamW` on the torch backend: `torch.optim.AdamW`'s multi-tensor update.

    `LayerwiseAdamW(...)` returns this subclass when the backend is torch. The
    torch backend runs eagerly, so the per-variable `update_step` costs some
    twenty dispatched ops per variable and step; here all variables move in a
    few `torch._foreach_*` calls, the operations of torch's own multi-tensor
    AdamW (`foreach=True`), with the step sizes and bias corrections computed
    on the host in double precision as torch computes them. The learning rates
    and step counts are read back to the host once per step (one transfer).
    """

    def _parallel_update_step(self, grads, variables, learning_rate):
        params = [v.value for v in variables]
        indices = [compat.optimizer_variable_index(self, v) for v in variables]
        grads = [keras.ops.convert_to_tensor(g, dtype=p.dtype) for g, p in zip(grads, params)]
        momentums = [self.momentums[i].value for i in indices]
        velocities = [self.velocities[i].value for i in indices]
        counts = [self.step_counts[i].value for i in indices]
        torch._foreach_add_(counts, 1.0)
        multipliers = self.learning_rate_multipliers.value
        rates = keras.ops.convert_to_tensor(learning_rate, dtype=multipliers.dtype) * multipliers
        rates = rates[indices]
        # Rates and step counts as Python floats, like torch's param-group rates and its
        # `_get_value(step)`: one read back to the host for all variables.
        host = torch.cat([rates, torch.stack(counts).to(rates.device)]).tolist()
        rates, steps = host[: len(indices)], host[len(indices) :]
        if self.adamw_weight_decay:
            torch._foreach_mul_(params, [1 - rate * self.adamw_weight_decay for rate in rates])
        torch._foreach_lerp_(momentums, grads, 1 - self.beta_1)
        torch._foreach_mul_(velocities, self.beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, 1 - self.beta_2)
        step_sizes = [-rate / (1 - self.beta_1**step) for rate, step in zip(rates, steps)]
        bias_corrections_2 = [(1 - self.beta_2**step) ** 0.5 for step in steps]
        denoms = torch._foreach_sqrt(velocities)
        torch._foreach_div_(denoms, bias_corrections_2)
        torch._foreach_add_(denoms, self.epsilon)
        torch._foreach_addcdiv_(params, momentums, denoms, step_sizes)
