"""`TorchLayerwiseSGD`: `LayerwiseSGD` with one fused update of all variables on torch."""

from typing import Any

import keras
import torch

from keras_rollback import compat
from keras_rollback.optimizers.layerwise_sgd import LayerwiseSGD
from keras_rollback.optimizers.torch_state_reset import TorchStateReset

# Keras' base of its fused torch optimizers (a private class, reached through compat).
TorchParallelOptimizer: Any = compat.torch_parallel_optimizer()


# Saved under LayerwiseSGD's name, so a file written on torch loads on every backend.
@keras.saving.register_keras_serializable(package="keras_rollback", name="LayerwiseSGD")
class TorchLayerwiseSGD(TorchStateReset, TorchParallelOptimizer, LayerwiseSGD):
    """`LayerwiseSGD` on the torch backend: `torch.optim.SGD`'s multi-tensor update.

    `LayerwiseSGD(...)` returns this subclass when the backend is torch, as
    `keras.optimizers.SGD(...)` returns Keras' fused torch `SGD`. The torch
    backend runs eagerly, so the per-variable `update_step` costs a dozen
    dispatched ops per variable and step; here all variables move in a few
    `torch._foreach_*` calls, the same operations in the same order as
    torch's, hence the same rounding.

    torch computes the decayed (and Nesterov) gradient into tensors allocated
    anew at every step; on the CPU that allocation cost as much as the rest of
    the update (35 ms of ResNet-50's ~60 ms, measured here), so those go into
    scratch tensors reused at every step: one per variable, as much memory as
    the trainable weights, which the allocating form also takes at every step.
    They hold no state (every step overwrites them before reading them).
    """

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._scratch_tensors = [None] * len(variables)

    def _parallel_update_step(self, grads, variables, learning_rate):
        params = [v.value for v in variables]
        indices = [compat.optimizer_variable_index(self, v) for v in variables]
        buffers = [self.momentums[i].value for i in indices]
        grads = [keras.ops.convert_to_tensor(g, dtype=p.dtype) for g, p in zip(grads, params)]
        multipliers = self.learning_rate_multipliers.value
        # Rates as Python floats, like torch's param-group rates (and like the `alpha` of
        # Keras' own fused SGD, which reads its learning rate back to the host too).
        rates = (
            keras.ops.convert_to_tensor(learning_rate, dtype=multipliers.dtype) * multipliers
        ).tolist()
        steps: list = grads
        if self.l2_weight_decay:
            steps = self._scratch(indices, params)
            for step, grad, param in zip(steps, grads, params):
                torch.add(grad, param, alpha=self.l2_weight_decay, out=step)
        torch._foreach_mul_(buffers, self.momentum)
        torch._foreach_add_(buffers, steps)
        if self.nesterov:
            if steps is grads:  # Never change the caller's gradients in place.
                steps = self._scratch(indices, params)
                for step, grad, buffer in zip(steps, grads, buffers):
                    torch.add(grad, buffer, alpha=self.momentum, out=step)
            else:
                torch._foreach_add_(steps, buffers, alpha=self.momentum)
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

    def _scratch(self, indices, params):
        """The reusable scratch tensor of each variable (made on first use)."""
        tensors = []
        for index, param in zip(indices, params):
            tensor = self._scratch_tensors[index]
            if tensor is None or (tensor.shape, tensor.dtype, tensor.device) != (
                param.shape,
                param.dtype,
                param.device,
            ):
                tensor = self._scratch_tensors[index] = torch.empty_like(param)
            tensors.append(tensor)
        return tensors
