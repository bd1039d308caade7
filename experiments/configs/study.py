"""The multi-seed study (docs/study.md): does rolling back help on the main job's task?

The README's main job's task (synthetic ReID, ResNet-18 pre-trained on a disjoint synthetic
source task) over 5 seeds: base_cy, rollback with the fixed plan and plateau-triggered
rollback, 4 periods of 2 epochs (the rates decay x0.1 after the first epoch of a period,
the paper's 40/20 shape). Plain fine-tuning, the paper's baseline, is period 1 of every
method (same seed, same weights, same batches), read from base_cy's period 1. The plateau
rule was fixed before any result was seen and is not tuned: a period ends when the
training loss has not improved by 0.01 for one epoch (the first such plateau of a period
decays its rates instead), after 1 to 4 epochs; at most 4 periods, 8 epochs in all.

    python -m experiments.main --config=experiments/configs/study.py --workdir=/tmp/study
"""

import ml_collections

from experiments.configs import synthetic


def get_config():
    config = synthetic.get_config()
    config.methods = ("base_cy", "rollback", "plateau_rollback")
    config.plan.period_epochs = 2
    config.plan.decay_epochs = 1
    config.plan.plateau.min_delta = 0.01
    config.plan.plateau.patience = 1
    config.plan.plateau.min_period_epochs = 1
    config.plan.plateau.max_period_epochs = 4
    config.evaluation.ranked_list_queries = 2
    config.study = ml_collections.ConfigDict()
    config.study.seeds = (0, 1, 2, 3, 4)
    # Paired per-seed differences of the final scores, "<method>" (its last evaluation) or
    # "<method>@<period>"; fine-tuning is period 1.
    config.study.differences = (
        ("rollback", "base_cy"),
        ("rollback", "base_cy@1"),
        ("base_cy", "base_cy@1"),
        ("plateau_rollback", "base_cy"),
        ("plateau_rollback", "rollback"),
    )
    return config
