"""Table 3: the same 4 periods with ResNet-34 or ResNet-101.

--config=experiments/configs/table3.py:resnet101,market1501
"""

from experiments.configs import default


def get_config(arguments="resnet34,market1501"):
    backbone, dataset = arguments.split(",")
    config = default.get_config()
    config.model.backbone = backbone
    config.dataset.name = dataset
    config.methods = ("rollback",)
    return config
