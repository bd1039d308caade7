"""`TorchStateReset`: the fused torch optimizers zero their state in place."""

from collections.abc import Callable

import torch


class TorchStateReset:
    """Mixin of the fused torch optimizers: `reset_state()` zeroes the slots in place.

    The backend-neutral reset assigns a new zero tensor to every slot; on torch that allocates
    (and the kernel zeroes) as much memory as the whole optimizer state at every period start,
    which on a loaded CPU took seconds for a ViT-B/16's AdamW state (659 MB). One
    `torch._foreach_zero_` writes the same zeros into the existing tensors.
    """

    # Provided by `LayerwiseLearningRates`, which every class using this mixin derives from.
    _check_built: Callable[[str], None]
    _state_variables: Callable[[], list]

    def reset_state(self):
        self._check_built("reset_state")
        torch._foreach_zero_([variable.value for variable in self._state_variables()])
