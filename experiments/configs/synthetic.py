"""The README's main job: the whole method in a few minutes, offline, on generated data.

A ResNet-18 is first pre-trained on a disjoint synthetic source task (other identities,
other seed) and cached; these are NOT ImageNet weights. Then plain fine-tuning followed by
base_cy restarts is compared with rolling-back refine-tuning, 4 periods of 3 epochs.
"""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.dataset.name = "synthetic"
    config.synthetic.num_train_identities = 16
    config.synthetic.num_test_identities = 16
    config.synthetic.image_size = (64, 32)
    config.model.backbone = "resnet18"
    config.model.weights = "synthetic_source"
    config.image_size = (64, 32)
    config.batch_size = 16
    config.plan.period_epochs = 3
    config.plan.decay_epochs = 2
    return config
