"""The model, loss and training batches a config asks for: the paper's recipe or Bag of Tricks."""

import keras

from keras_rollback import data as reid_data
from keras_rollback.losses import ReIDLoss
from keras_rollback.models import build_bnneck_feature_model
from keras_rollback.models import build_bnneck_model
from keras_rollback.models import build_feature_model
from keras_rollback.models import build_reid_model

NECKS = ("bottleneck", "bnneck", "none")


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
        )
    return build_bnneck_model(
        num_classes,
        config.model.backbone,
        weights=weights,
        input_shape=(*config.image_size, 3),
        last_stride=config.model.last_stride,
        bnneck=config.model.neck == "bnneck",
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


def train_batches(config, records, preprocessing, start_epoch):
    """`(dataset, steps_per_epoch)`: shuffled batches, or P x K identity batches (always
    full, so the multi-process share of a batch is equal too)."""
    augmentation = {
        "image_size": tuple(config.image_size),
        "preprocessing": preprocessing,
        "seed": config.seed,
        "start_epoch": start_epoch,
        "random_crop_padding": config.augmentation.random_crop_padding,
        "random_erasing_probability": config.augmentation.random_erasing_probability,
    }
    if config.sampler.identities_per_batch:
        return reid_data.make_identity_train_dataset(
            records,
            identities_per_batch=config.sampler.identities_per_batch,
            images_per_identity=config.sampler.images_per_identity,
            **augmentation,
        )
    # Several processes need full global batches: each feeds an equal share.
    drop_remainder = config.distribution.num_processes > 1
    dataset = reid_data.make_train_dataset(
        records, batch_size=config.batch_size, drop_remainder=drop_remainder, **augmentation
    )
    steps = reid_data.steps_per_epoch(
        len(records), config.batch_size, drop_remainder=drop_remainder
    )
    return dataset, steps
