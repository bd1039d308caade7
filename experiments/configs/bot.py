"""Rolling back on top of the strong ReID baseline (Luo et al., "Bag of Tricks", CVPRW 2019).

BoT's tricks as config options: identity sampler (P=16 identities x K=4 images), batch-hard
triplet loss (margin 0.3) beside the label-smoothed (0.1) identity loss, BNNeck (evaluated
after it), last stride 1, 256x128 images, random erasing 0.5 and 10-pixel pad-and-crop.
Training keeps the paper's LayerwiseSGD and periods (rollback needs per-group learning rates
and a momentum reset; BoT's Adam with warm-up is not used), so `rollback` vs `base_cy`
answers whether rolling back still helps a modern recipe. RollbackRefine is the same
callback: it only touches weights, learning rates and momentum, never the loss.

    python -m experiments.main --config=experiments/configs/bot.py \\
        --config.dataset.root=/data/Market-1501-v15.09.15 --workdir=/tmp/bot-market
"""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.image_size = (256, 128)
    config.model.neck = "bnneck"
    config.model.last_stride = 1
    config.loss.label_smoothing = 0.1
    config.loss.triplet_margin = 0.3
    config.loss.triplet_weight = 1.0
    config.sampler.identities_per_batch = 16
    config.sampler.images_per_identity = 4
    config.augmentation.random_crop_padding = 10
    config.augmentation.random_erasing_probability = 0.5
    return config
