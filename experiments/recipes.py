"""The model, loss and training batches a config asks for: the paper's recipe or Bag of Tricks."""

import keras

from keras_rollback import LayerwiseAdamW
from keras_rollback import LayerwiseSGD
from keras_rollback import data as reid_data
from keras_rollback.losses import ReIDLoss
from keras_rollback.models import BackboneSpec
from keras_rollback.models import backbone_preprocessing
from keras_rollback.models import build_bnneck_feature_model
from keras_rollback.models import build_bnneck_model
from keras_rollback.models import build_feature_model
from keras_rollback.models import build_reid_model
from keras_rollback.models import get_backbone_spec
from keras_rollback.models import register_backbone
from keras_rollback.models.backbone_presets import keras_hub_transformer_builder
from keras_rollback.models.backbone_registry import backbone_architectures
from keras_rollback.models.transformer_blocks import keras_hub_transformer_rules

NECKS = ("bottleneck", "bnneck", "none")
OPTIMIZERS = ("sgd", "adamw")

# Small keras-hub ViTs that a 2-core CPU pre-trains on the synthetic source task in a minute
# (weights="synthetic_source", configs/vit.py): no published weights, random or pre-trained here.
SYNTHETIC_VITS = {
    # 8x8 patches (64x32 images: 8x4 patches and the class token), DeiT-Tiny's width, 4 layers.
    "vit_mini_patch8": {
        "class": "ViTBackbone",
        "patch_size": 8,
        "num_layers": 4,
        "num_heads": 3,
        "hidden_dim": 192,
        "mlp_dim": 768,
        "layer_norm_epsilon": 1e-6,
    },
}
if not set(SYNTHETIC_VITS) & set(backbone_architectures()):  # Once, reloads included.
    register_backbone(
        BackboneSpec(
            family="experiments_synthetic_vit",
            source="keras_hub",
            architectures=SYNTHETIC_VITS,
            build=keras_hub_transformer_builder,
            preprocessing="tf",
            block_rules=keras_hub_transformer_rules(("ViTBackbone",)),
            block_options=("layer_groups",),
            description="Small keras-hub ViTs of the offline experiments (experiments/recipes.py)",
        )
    )


def architecture(config):
    """The registered configuration of `config.model.backbone` (for cache keys), or its name."""
    arch = config.model.backbone
    value = get_backbone_spec(arch).architectures[arch]
    return dict(value) if isinstance(value, dict) else value


def optimizer(config):
    """`LayerwiseSGD(**config.optimizer)` or `LayerwiseAdamW(**config.adamw)`, by
    `config.optimizer_name` (`"sgd"` where the config has no such field)."""
    name = config.get("optimizer_name", "sgd")
    if name == "sgd":
        return LayerwiseSGD(**config.optimizer)
    if name == "adamw":
        return LayerwiseAdamW(**config.adamw)
    raise ValueError(f"Unknown config.optimizer_name={name!r}. Expected one of {OPTIMIZERS}.")


def build_model(config, num_classes, weights):
    """`build_reid_model` (neck "bottleneck") or `build_bnneck_model` ("bnneck" / "none")."""
    if config.model.neck not in NECKS:
        raise ValueError(f"Unknown model.neck={config.model.neck!r}. Expected one of {NECKS}.")
    if config.model.neck == "bottleneck":
        if config.loss.triplet_weight:
            raise ValueError(
                "loss.triplet_weight > 0 needs the feature beside the logits: set "
                "--config.model.neck=bnneck (or 'none': the baseline without BNNeck)."
            )
        return build_reid_model(
            num_classes,
            config.model.backbone,
            weights=weights,
            input_shape=(*config.image_size, 3),
            dropout=config.model.dropout,
            token_pooling=config.model.get("token_pooling", "class"),
        )
    return build_bnneck_model(
        num_classes,
        config.model.backbone,
        weights=weights,
        input_shape=(*config.image_size, 3),
        last_stride=config.model.last_stride,
        bnneck=config.model.neck == "bnneck",
        token_pooling=config.model.get("token_pooling", "class"),
    )


def compile_arguments(config, num_classes):
    """Loss and metrics of `model.compile`: cross-entropy, or `ReIDLoss` for the tricks."""
    if config.model.neck == "bottleneck" and not config.loss.label_smoothing:
        return {
            "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "metrics": ["accuracy"],
        }
    return {
        "loss": ReIDLoss(
            num_classes,
            label_smoothing=config.loss.label_smoothing,
            triplet_margin=config.loss.triplet_margin,
            triplet_weight=config.loss.triplet_weight,
        )
    }


def feature_model(config, model):
    """The evaluation feature: pooled (paper) or after the BNNeck (Bag of Tricks)."""
    if config.model.neck == "bottleneck":
        return build_feature_model(model)
    return build_bnneck_feature_model(model)


def image_transform(config):
    """The `ImageTransform` of every data builder of a run, built from the config once.

    `config.image_size`, the normalisation of the backbone's weights
    (`backbone_preprocessing(config.model.backbone, weights=config.model.weights)`), the
    pipeline's bicubic resize and random flip, and `config.augmentation`'s pad-and-crop and
    random erasing. The evaluation builders apply only its resize and normalisation.
    """
    return reid_data.ImageTransform(
        image_size=tuple(config.image_size),
        preprocessing=backbone_preprocessing(config.model.backbone, weights=config.model.weights),
        random_crop_padding=config.augmentation.random_crop_padding,
        random_erasing_probability=config.augmentation.random_erasing_probability,
    )


def train_batches(config, records, transform, start_epoch):
    """`(dataset, steps_per_epoch)`: shuffled batches, or P x K identity batches (always
    full, so the multi-process share of a batch is equal too)."""
    options = {"transform": transform, "seed": config.seed, "start_epoch": start_epoch}
    if config.sampler.identities_per_batch:
        return reid_data.make_identity_train_dataset(
            records,
            identities_per_batch=config.sampler.identities_per_batch,
            images_per_identity=config.sampler.images_per_identity,
            **options,
        )
    # Several processes need full global batches: each feeds an equal share.
    drop_remainder = config.distribution.num_processes > 1
    dataset = reid_data.make_train_dataset(
        records, batch_size=config.batch_size, drop_remainder=drop_remainder, **options
    )
    steps = reid_data.steps_per_epoch(
        len(records), config.batch_size, drop_remainder=drop_remainder
    )
    return dataset, steps
