"""The training methods the paper compares, as `RefinePlan`s of one config."""

import dataclasses

from keras_rollback import PlateauRule
from keras_rollback import RefinePlan

METHODS = (
    "rollback",
    "base_cy",
    "fine_tune",
    "fc_warmup",
    "plateau_rollback",
    "keep_block:<block>",
)
# `plan_config` fields that each method sets itself (the others are shared by all methods).
_PER_METHOD = ("periods", "warmup_epochs", "plateau")


def plan_for(method, plan_config):
    """The `RefinePlan` of `method` under the shared schedule in `plan_config`.

    * `rollback`: rolling-back refine-tuning (periods, kept blocks 1..p-1).
    * `base_cy`: the same learning-rate restarts and momentum resets, no rollback.
    * `fine_tune`: ordinary fine-tuning, one period (the paper's baseline).
    * `fc_warmup`: `warmup_epochs` with the backbone frozen, then base_cy fine-tuning.
    * `plateau_rollback`: rolling back when the training loss stops improving
      (`plan_config.plateau`: a `PlateauRule`'s arguments), at most `periods` periods, for
      the same number of epochs as `rollback`.
    * `keep_block:<block>`: one fine-tuning period, then keep only `<block>` and roll back
      every other block for one period (Table 1 / Figure 3).
    """
    shared = RefinePlan(
        **{
            field.name: plan_config[field.name]
            for field in dataclasses.fields(RefinePlan)
            if field.name in plan_config and field.name not in _PER_METHOD
        }
    )
    periods = plan_config.periods
    if method == "rollback":
        return dataclasses.replace(shared, periods=periods)
    if method == "base_cy":
        return dataclasses.replace(shared, periods=periods, rollback=False)
    if method == "fine_tune":
        return dataclasses.replace(shared, periods=1)
    if method == "fc_warmup":
        return dataclasses.replace(
            shared, periods=periods, rollback=False, warmup_epochs=plan_config.warmup_epochs
        )
    if method == "plateau_rollback":
        plateau = PlateauRule(**plan_config.plateau)
        return dataclasses.replace(shared, periods=periods, plateau=plateau)
    if method.startswith("keep_block:"):
        block = method.split(":", 1)[1]
        return dataclasses.replace(shared, periods=2, kept_blocks=[[block]])
    raise ValueError(f"Unknown method {method!r}. Expected one of {METHODS}.")
