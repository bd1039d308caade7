"""An offline stand-in for ImageNet weights: a backbone pre-trained on a synthetic source task."""

import dataclasses
import hashlib
import json
import math
import os
import tempfile

import keras
from absl import logging

from experiments import recipes
from experiments import workdir as workdir_lib
from keras_rollback import _atomic_files
from keras_rollback.data import make_train_dataset
from keras_rollback.data import read_market1501
from keras_rollback.data import write_synthetic_market1501
from keras_rollback.fit_verbosity import fit_verbosity
from keras_rollback.models import build_reid_model

# Far from any seed a config uses, so the source identities never reappear in the target task.
SOURCE_SEED_OFFSET = 7919


def synthetic_source_weights(config, cache_dir):
    """Path of a backbone `.weights.h5` pre-trained on a disjoint synthetic ReID task.

    Trained once per (backbone, image size, pre-training config, seed) and cached in
    `cache_dir`, so every method of an experiment starts from the same weights. These are
    not ImageNet weights: they only give the blocks a trained state to roll back to when
    no network is available.

    The weights file is written atomically, then its size and SHA-256 beside it
    (`<file>.json`); a cached file is used only if it matches them, and a truncated or
    damaged one is reported by path and trained again. The source dataset is written to a
    temporary folder in `cache_dir`, deleted afterwards (or at the next call, after a kill).
    """
    recipe = {
        "backbone": config.model.backbone,
        "image_size": list(config.image_size),
        "source_image_size": list(config.synthetic.image_size),
        "seed": config.seed,
        **config.pretrain.to_dict(),
    }
    architecture = recipes.architecture(config)
    if isinstance(architecture, dict) and "class" in architecture:
        # A transformer's shape is a configuration (configs/vit.py): changing it changes the key.
        # (The CNNs' keys predate this field and stay as they were, so their caches stay valid.)
        recipe["architecture"] = architecture
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, f"{config.model.backbone}-synthetic-source-{key}.weights.h5")
    problem = _cache_problem(path)
    if problem is None:
        logging.info("Using cached synthetic-source backbone %s", path)
        return path
    if os.path.exists(path):
        logging.warning("Cached synthetic-source backbone %s %s: training it again.", path, problem)
    os.makedirs(cache_dir, exist_ok=True)
    workdir_lib.remove_temp_folders(cache_dir, "source-dataset")
    logging.warning(
        "Pre-training %s on a synthetic source task (%d identities, %d epochs): these are NOT "
        "ImageNet weights.",
        config.model.backbone,
        config.pretrain.num_identities,
        config.pretrain.epochs,
    )
    prefix = f".source-dataset{_atomic_files.TEMP_MARKER}"
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=prefix) as source_dir:
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
            token_pooling=config.model.get("token_pooling", "class"),
        )
        model.compile(
            optimizer=_source_optimizer(config.pretrain),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        # The run's transform (size, normalisation, flip) without the pad-and-crop and random
        # erasing of `config.augmentation`, which the cache key does not record.
        transform = dataclasses.replace(
            recipes.image_transform(config), random_crop_padding=0, random_erasing_probability=0.0
        )
        train = make_train_dataset(
            source.train,
            transform=transform,
            batch_size=config.batch_size,
            seed=config.seed,
            drop_remainder=config.distribution.num_processes > 1,  # Equal shares per process.
        )
        history = model.fit(
            train, epochs=config.pretrain.epochs, shuffle=False, verbose=fit_verbosity()
        )
    backbone = model.get_layer(f"{config.model.backbone}_backbone")
    _atomic_files.atomic_write(
        path,
        backbone.save_weights,
        suffix=".weights.h5",
        expected_bytes=sum(math.prod(w.shape) * 4 for w in backbone.weights),
    )
    # How far the source task trained: its last epoch's training loss and accuracy.
    final_epoch = {name: float(values[-1]) for name, values in history.history.items()}
    logging.info("Synthetic-source pre-training ended with %s", final_epoch)
    _atomic_files.write_json(
        path + ".json",
        {
            "bytes": os.path.getsize(path),
            "sha256": _atomic_files.sha256_of_file(path),
            "source_task": {
                "identities": source.num_train_pids,
                "images": len(source.train),
                "final_epoch": final_epoch,
            },
        },
    )
    return path


def source_training_record(weights_path):
    """The source task's size and its last epoch's training logs, recorded beside the
    weights by `synthetic_source_weights` (None for weights cached before it recorded them)."""
    record = workdir_lib.read_json(weights_path + ".json")
    return record.get("source_task") if isinstance(record, dict) else None


def _source_optimizer(pretrain):
    """SGD with Nesterov momentum (the CNNs), or AdamW (`pretrain.optimizer="adamw"`: ViTs)."""
    name = pretrain.get("optimizer", "sgd")
    if name == "sgd":
        return keras.optimizers.SGD(pretrain.learning_rate, momentum=0.9, nesterov=True)
    if name == "adamw":
        return keras.optimizers.AdamW(pretrain.learning_rate, weight_decay=0.05)
    raise ValueError(f"Unknown config.pretrain.optimizer={name!r}. Expected 'sgd' or 'adamw'.")


def _cache_problem(path):
    """Why the cached weights at `path` cannot be used, or None if they match their record."""
    if not os.path.exists(path):
        return "is absent"
    record = workdir_lib.read_json(path + ".json")
    if not isinstance(record, dict):
        return "has no size and checksum record (killed while caching?)"
    found = {"bytes": os.path.getsize(path), "sha256": _atomic_files.sha256_of_file(path)}
    if found != {"bytes": record.get("bytes"), "sha256": record.get("sha256")}:
        return (
            f"is truncated or damaged ({found['bytes']} bytes, expected {record.get('bytes')}; "
            "checksum differs)"
        )
    return None
