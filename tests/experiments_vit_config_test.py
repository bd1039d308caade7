"""Smoke test of experiments/configs/vit.py: a ViT rolled back with LayerwiseAdamW."""

import json
from typing import ClassVar

import keras
import numpy as np

from experiments import recipes
from experiments import train
from experiments.configs import default
from experiments.configs import smoke
from experiments.configs import vit
from keras_rollback import BlockPartition
from keras_rollback import LayerwiseAdamW
from keras_rollback import LayerwiseSGD
from keras_rollback import PretrainedSnapshot
from keras_rollback.callbacks.rollback_refine import RollbackRefine


def tiny_vit_config():
    """vit.py's recipe (its small ViT pre-trained on the source task) on smoke.py's sizes."""
    config = vit.get_config()
    tiny = smoke.get_config()
    for section in ("dataset", "synthetic", "evaluation"):
        config[section] = tiny[section]
    for field in ("num_identities", "images_per_camera", "epochs"):
        config.pretrain[field] = tiny.pretrain[field]
    for field in ("period_epochs", "periods", "decay_epochs"):
        config.plan[field] = tiny.plan[field]
    config.image_size = tiny.image_size  # 32x16: a 4x2 grid of 8x8 patches.
    config.batch_size = tiny.batch_size
    config.methods = ("rollback",)
    return config


class RecordingRollbackRefine(RollbackRefine):
    """Records, after each epoch's rollback, every group's weights and the optimizer state."""

    records: ClassVar[list] = []
    partition: ClassVar[BlockPartition | None] = None

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        model = self.model
        arrays = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
        optimizer = model.optimizer
        state = [keras.ops.convert_to_numpy(v) for v in optimizer.momentums + optimizer.velocities]
        type(self).records.append((epoch, arrays, type(optimizer), state))
        type(self).partition = self.partition


def test_vit_recipe_rolls_back_to_the_snapshot_with_adamw(tmp_path, monkeypatch):
    config = tiny_vit_config()
    RecordingRollbackRefine.records = []
    monkeypatch.setattr(train, "RollbackRefine", RecordingRollbackRefine)
    rows = train.run_experiment(config, str(tmp_path))

    evaluated = [row for row in rows if row["mAP"] is not None]
    assert [row["period"] for row in evaluated] == [1, 2]
    assert all(0.0 <= row["mAP"] <= 1.0 for row in evaluated)
    weights = json.loads((tmp_path / "weights.json").read_text())
    assert weights["weights"] == "synthetic_source"
    assert weights["file"].endswith(".weights.h5") and "vit_mini_patch8" in weights["file"]

    (_, _, first_optimizer, _), (epoch, after_rollback, optimizer, state) = (
        RecordingRollbackRefine.records
    )
    # (On torch, its fused subclass.)
    assert first_optimizer is optimizer and issubclass(optimizer, LayerwiseAdamW) and epoch == 1
    # Period 2 kept the stem and rolled the 4 groups of layers back to the pre-trained weights.
    partition = RecordingRollbackRefine.partition
    assert partition.block_names == ("stem", "layers_1", "layers_2", "layers_3", "layers_4")
    snapshot = PretrainedSnapshot.load(str(tmp_path / "rollback" / "pretrained.npz"), partition)
    for block in partition.block_names[1:]:
        for path in partition.paths(block):
            np.testing.assert_array_equal(after_rollback[path], snapshot.arrays[path])
    stem = partition.paths("stem")
    assert any(not np.array_equal(after_rollback[p], snapshot.arrays[p]) for p in stem)
    # AdamW's moments were reset with the rollback.
    assert all(not np.any(s) for s in state)

    epochs = [json.loads(line) for line in (tmp_path / "rollback" / "epochs.jsonl").open()]
    assert [e["period"] for e in epochs] == [1, 2]
    # Layer-wise decay: each block below the top one at 0.75 x the rate of the one above it.
    top = config.plan.learning_rate * config.plan.layer_decay
    assert np.isclose(epochs[1]["lr_layers_4"], top)
    assert np.isclose(epochs[1]["lr_layers_3"], top * config.plan.layer_decay)
    assert np.isclose(epochs[1]["lr_head"], config.plan.refine_head_learning_rate)


def test_optimizer_name_picks_sgd_by_default_and_adamw_with_its_own_arguments():
    config = default.get_config()
    assert config.optimizer_name == "sgd"
    assert isinstance(recipes.optimizer(config), LayerwiseSGD)
    config.optimizer_name = "adamw"
    optimizer = recipes.optimizer(config)
    assert isinstance(optimizer, LayerwiseAdamW)
    assert optimizer.adamw_weight_decay == config.adamw.weight_decay
    assert recipes.optimizer(vit.get_config()).adamw_weight_decay == 0.05
