"""An offline stand-in for ImageNet weights: a backbone pre-trained on a synthetic source task."""

import hashlib
import json
import os
import tempfile

import keras
from absl import logging

from keras_rollback.data import make_train_dataset
from keras_rollback.data import read_market1501
from keras_rollback.data import write_synthetic_market1501
from keras_rollback.models import backbone_preprocessing
from keras_rollback.models import build_reid_model

# Far from any seed a config uses, so the source identities never reappear in the target task.
SOURCE_SEED_OFFSET = 7919


def synthetic_source_weights(config, cache_dir):
    """Path of a backbone `.weights.h5` pre-trained on a disjoint synthetic ReID task.

    Trained once per (backbone, image size, pre-training config, seed) and cached in
    `cache_dir`, so every method of an experiment starts from the same weights. These are
    not ImageNet weights: they only give the blocks a trained state to roll back to when
    no network is available.
    """
    recipe = {
        "backbone": config.model.backbone,
        "image_size": list(config.image_size),
        "source_image_size": list(config.synthetic.image_size),
        "seed": config.seed,
        **config.pretrain.to_dict(),
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, f"{config.model.backbone}-synthetic-source-{key}.weights.h5")
    if os.path.exists(path):
        logging.info("Using cached synthetic-source backbone %s", path)
        return path
    logging.warning(
        "Pre-training %s on a synthetic source task (%d identities, %d epochs): these are NOT "
        "ImageNet weights.",
        config.model.backbone,
        config.pretrain.num_identities,
        config.pretrain.epochs,
    )
    with tempfile.TemporaryDirectory() as source_dir:
        write_synthetic_market1501(
            source_dir,
            num_train_identities=config.pretrain.num_identities,
            num_test_identities=2,
            num_cameras=config.synthetic.num_cameras,
            images_per_camera=config.pretrain.images_per_camera,
            image_size=tuple(config.synthetic.image_size),
            seed=config.seed + SOURCE_SEED_OFFSET,
        )
        source = read_market1501(source_dir)
        model = build_reid_model(
            source.num_train_pids,
            config.model.backbone,
            input_shape=(*config.image_size, 3),
            dropout=0.0,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(
                config.pretrain.learning_rate, momentum=0.9, nesterov=True
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        train = make_train_dataset(
            source.train,
            image_size=tuple(config.image_size),
            batch_size=config.batch_size,
            preprocessing=backbone_preprocessing(config.model.backbone),
            seed=config.seed,
            drop_remainder=config.distribution.num_processes > 1,  # Equal shares per process.
        )
        model.fit(train, epochs=config.pretrain.epochs, shuffle=False, verbose=2)
    os.makedirs(cache_dir, exist_ok=True)
    backbone = model.get_layer(f"{config.model.backbone}_backbone")
    partial = path + ".partial.weights.h5"
    backbone.save_weights(partial)
    os.replace(partial, path)
    return path
