"""The training methods the paper compares, and the alternatives a user would pick instead,
as `RefinePlan`s of one config (plus, for L2-SP, a callback; for WiSE-FT, a weight mix)."""

import copy
import dataclasses

from keras_rollback import PlateauRule
from keras_rollback import RefinePlan
from keras_rollback.callbacks import L2SP
from keras_rollback.callbacks import WiSEFT

METHODS = (
    "rollback",
    "base_cy",
    "fine_tune",
    "fc_warmup",
    "lp_ft",
    "plateau_rollback",
    "l2_sp",
    "wise_ft",
    "wise_ft_depth_scaled",
    "keep_block:<block>",
)
# Methods that continue from the shared period 1 and need it (`config.share_period_one`).
CONTINUE_FROM_PERIOD_ONE = ("l2_sp", "wise_ft", "wise_ft_depth_scaled")
# Methods that train nothing: a weight mix of the shared period 1 and the pre-trained weights.
WEIGHT_MIXES = ("wise_ft", "wise_ft_depth_scaled")
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
    * `lp_ft`: LP-FT (Kumar et al., ICLR 2022), `RefinePlan.linear_probe_then_fine_tune`:
      `warmup_epochs` of linear probing, then one fine-tuning period.
    * `l2_sp`: base_cy's periods with L2-SP (Li et al., ICML 2018) after period 1: the
      backbone decays toward its pre-trained weights (`callbacks_for`).
    * `wise_ft` / `wise_ft_depth_scaled`: WiSE-FT (Wortsman et al., CVPR 2022) of period 1:
      its weights mixed with the pre-trained ones (`weight_mix`); fine_tune's plan.
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
    if method == "fine_tune" or method in WEIGHT_MIXES:
        return dataclasses.replace(shared, periods=1)
    if method == "l2_sp":
        return dataclasses.replace(shared, periods=periods, rollback=False)
    if method == "lp_ft":
        return RefinePlan.linear_probe_then_fine_tune(
            probe_epochs=plan_config.warmup_epochs,
            fine_tune_epochs=plan_config.period_epochs,
            **{
                name: getattr(shared, name)
                for name in (
                    "learning_rate",
                    "head_learning_rate",
                    "decay_epochs",
                    "decay_factor",
                    "layer_decay",
                )
            },
        )
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


def method_config(method, config):
    """`config` as `method` trains with it: L2-SP turns the optimizer's weight decay off
    (its `beta` is the head's; decay toward zero would fight the pull toward `w0`)."""
    if method != "l2_sp":
        return config
    config = copy.deepcopy(config)
    with config.unlocked():
        config.optimizer.weight_decay = 0.0
        config.adamw.weight_decay = 0.0
    return config


def callbacks_for(method, config, partition, snapshot):
    """The callbacks `method` adds to `fit` beside `RollbackRefine` (L2-SP's penalty)."""
    if method == "l2_sp":
        return [
            L2SP(partition, alpha=config.l2_sp.alpha, beta=config.l2_sp.beta, snapshot=snapshot)
        ]
    return []


def weight_mix(method, config, partition, snapshot):
    """The `WiSEFT` that makes `method` (one of `WEIGHT_MIXES`) from period 1's weights."""
    return WiSEFT(
        partition,
        mixing=config.wise_ft.mixing,
        snapshot=snapshot,
        depth_scaled=method == "wise_ft_depth_scaled",
    )
