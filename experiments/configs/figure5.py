"""Figure 5: rolling back vs FC warm-up (20 epochs with a frozen backbone, then fine-tuning)."""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.methods = ("rollback", "fc_warmup")
    config.plan.warmup_epochs = 20
    config.evaluation.every_epochs = 10
    return config
