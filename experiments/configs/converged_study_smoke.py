"""The converged-regime study's smoke test: its config at smoke-test size, 2 seeds."""

from experiments.configs import converged_study
from experiments.configs import smoke


def get_config():
    config = converged_study.get_config()
    tiny = smoke.get_config()
    for field in ("pretrain", "evaluation"):
        config[field] = tiny[field]
    for name, value in tiny.synthetic.items():
        config.synthetic[name] = value
    config.image_size = tiny.image_size
    config.batch_size = tiny.batch_size
    config.plan.decay_epochs = 1
    config.plan.warmup_epochs = 1
    config.plan.periods = 2
    config.plan.plateau.min_period_epochs = 1
    config.plan.plateau.max_period_epochs = 2
    # Any accuracy; a loss 5% down within 1 epoch counts as still improving; at most 3 epochs.
    config.converged_period_one.min_accuracy = 0.0
    config.converged_period_one.window = 1
    config.converged_period_one.min_epochs = 2
    config.converged_period_one.max_epochs = 3
    config.study.seeds = (0, 1)
    return config
