"""Table 7: InceptionV3 on Market-1501; blocks B1..B4 = stem, Mixed_5, Mixed_6, Mixed_7.

Three periods, so B1 and then B1+B2 are the kept low-level blocks, as in the paper.
"""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.model.backbone = "inception_v3"
    # torchvision has no ResNet-style V1 file for it here: keras.applications' ImageNet weights.
    config.model.weights = "imagenet"
    config.methods = ("rollback", "fine_tune")
    config.plan.periods = 3
    return config
