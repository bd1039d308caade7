"""The study's smoke test: the same config, tiny (2 seeds, smoke-sized data and periods)."""

from experiments.configs import smoke
from experiments.configs import study


def get_config():
    config = study.get_config()
    tiny = smoke.get_config()
    for field in ("synthetic", "pretrain", "plan", "evaluation"):
        config[field] = tiny[field]
    config.image_size = tiny.image_size
    config.batch_size = tiny.batch_size
    config.plan.plateau.min_period_epochs = 1
    config.plan.plateau.max_period_epochs = 1
    config.study.seeds = (0, 1)
    return config
