"""Table 1 / Figure 3: after baseline fine-tuning keep only block i, roll back all others."""

from experiments.configs import default

BLOCKS = ("stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x")


def get_config():
    config = default.get_config()
    config.methods = tuple(f"keep_block:{block}" for block in BLOCKS)
    return config
