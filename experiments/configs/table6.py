"""Table 6: fine-grained classification, baseline (period 1) vs rolling back.

    --config=experiments/configs/table6.py:caltech_birds2011   (or food101: TensorFlow
    Datasets, prepared in --config.dataset.root or the default TFDS folder; fgvc_aircraft:
    --config.dataset.root=<fgvc-aircraft-2013b folder>)
The paper gives no input size for these; 224x224 is the usual ImageNet crop.
"""

from experiments.configs import default


def get_config(dataset="caltech_birds2011"):
    config = default.get_config()
    config.task = "classification"
    config.dataset.name = dataset
    config.image_size = (224, 224)
    config.methods = ("rollback",)
    return config
