"""The training methods the paper compares, as `RefinePlan`s of one config."""

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
    shared = {
        "period_epochs": plan_config.period_epochs,
        "learning_rate": plan_config.learning_rate,
        "head_learning_rate": plan_config.head_learning_rate,
        "kept_learning_rate": plan_config.kept_learning_rate,
        "refine_head_learning_rate": plan_config.refine_head_learning_rate,
        "decay_epochs": plan_config.decay_epochs,
        "decay_factor": plan_config.decay_factor,
    }
    periods = plan_config.periods
    if method == "rollback":
        return RefinePlan(periods=periods, **shared)
    if method == "base_cy":
        return RefinePlan(periods=periods, rollback=False, **shared)
    if method == "fine_tune":
        return RefinePlan(periods=1, **shared)
    if method == "fc_warmup":
        return RefinePlan(
            periods=periods, rollback=False, warmup_epochs=plan_config.warmup_epochs, **shared
        )
    if method == "plateau_rollback":
        return RefinePlan(periods=periods, plateau=PlateauRule(**plan_config.plateau), **shared)
    if method.startswith("keep_block:"):
        return RefinePlan(periods=2, kept_blocks=[[method.split(":", 1)[1]]], **shared)
    raise ValueError(f"Unknown method {method!r}. Expected one of {METHODS}.")
