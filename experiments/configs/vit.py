"""Rolling back a vision transformer: fine_tune vs base_cy vs rollback with AdamW on a ViT.

A ViT has no resolutions to cut at: its blocks are the stem (patch embedding, class token,
position embedding) and the transformer layers in `layer_groups` groups (4 by default;
`BlockPartition.for_model`). The head is a BNNeck on the class token (TransReID's feature;
`--config.model.token_pooling=mean` averages the patch tokens instead), trained with
label-smoothed cross-entropy. The optimizer is `LayerwiseAdamW` (torch's AdamW) with
layer-wise rate decay (each block's rate x `plan.layer_decay ** depth` from the top), and
the paper's schedule otherwise: a rolled-back block restarts at `learning_rate`, a kept one
continues at `kept_learning_rate`, the optimizer state is reset at every period.

Offline (the default), a small ViT (`vit_mini_patch8`: 8x8 patches, 4 layers, width 192) is
pre-trained with AdamW on a disjoint synthetic source task and cached, as configs/synthetic.py
does for its ResNet-18 (these are NOT ImageNet weights), then fine-tuned on the synthetic
64x32 ReID task, in about the time of the README's main job:

    python -m experiments.main --config=experiments/configs/vit.py --workdir=/tmp/vit

Online, a keras-hub preset (its weights are downloaded by keras-hub into its cache on first
use; offline without them the run stops with a `MissingWeightsError` paragraph), on a real
dataset at ReID's 256x128 (ViT and DeiT presets are built at their own size and their
position embedding resampled bicubically to the 16x8 patch grid, as timm does; DINOv2 takes
square inputs only):

    python -m experiments.main --config=experiments/configs/vit.py --workdir=/tmp/vit-market \\
        --config.model.backbone=vit_base_patch16 --config.model.weights=imagenet \\
        --config.image_size='(256, 128)' --config.dataset.name=market1501 \\
        --config.dataset.root=/data/Market-1501-v15.09.15 \\
        --config.plan.period_epochs=40 --config.plan.decay_epochs=20
"""

from experiments.configs import synthetic


def get_config():
    config = synthetic.get_config()
    config.methods = ("fine_tune", "base_cy", "rollback")

    config.model.backbone = "vit_mini_patch8"
    config.model.weights = "synthetic_source"
    config.model.neck = "bnneck"
    config.model.token_pooling = "class"  # "class" (the class token) or "mean" (patch tokens).
    config.loss.label_smoothing = 0.1

    # The source task's pre-training of the small ViT (a ViT does not train with SGD's rates).
    config.pretrain.optimizer = "adamw"
    config.pretrain.learning_rate = 1e-3
    config.pretrain.epochs = 20

    config.optimizer_name = "adamw"
    config.adamw.weight_decay = 0.05
    # AdamW's rates: the paper's ratios (head x10 in period 1, kept blocks /10), 1e-3 base
    # (a real ViT-B fine-tunes at ~1e-4: --config.plan.learning_rate=1e-4 and the rest x0.1).
    config.plan.learning_rate = 1e-3
    config.plan.head_learning_rate = 1e-2
    config.plan.kept_learning_rate = 1e-4
    config.plan.refine_head_learning_rate = 1e-3
    config.plan.layer_decay = 0.75
    return config
