"""Tests for keras_rollback.models.bnneck_model, and RollbackRefine unchanged under ReIDLoss."""

import keras
import numpy as np
import pytest
from rollback_checks import PeriodStartProbe
from rollback_checks import assert_period_starts_from_rolled_back_state
from testing_models import weights_by_path

from keras_rollback import BlockPartition
from keras_rollback import LayerwiseSGD
from keras_rollback import RollbackRefine
from keras_rollback.losses import ReIDLoss
from keras_rollback.models import build_bnneck_feature_model
from keras_rollback.models import build_bnneck_model
from keras_rollback.models import keras_hub_resnet

SHAPE = (32, 16, 3)


def tiny_bnneck_model(bnneck=True):
    keras.utils.set_random_seed(0)
    backbone = keras_hub_resnet(
        "resnet18", input_shape=SHAPE, widths=(64, 8, 8, 8), blocks=(1, 1, 1, 1)
    )
    return build_bnneck_model(4, backbone, input_shape=SHAPE, bnneck=bnneck)


def test_outputs_logits_then_feature_and_evaluates_after_the_bnneck():
    model = tiny_bnneck_model()
    images = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
    output = keras.ops.convert_to_numpy(model(images, training=False))
    pooled = keras.Model(model.input, model.get_layer("pooled_feature").output)
    assert output.shape == (2, 4 + 8)
    np.testing.assert_allclose(output[:, 4:], pooled.predict(images, verbose=0), atol=1e-6)
    features = build_bnneck_feature_model(model)
    assert features.output.name == model.get_layer("bnneck").output.name
    assert not model.get_layer("bnneck").center and not model.get_layer("classifier").use_bias
    without = build_bnneck_feature_model(tiny_bnneck_model(bnneck=False))
    assert without.output.shape == (None, 8)
    with pytest.raises(ValueError, match="build_bnneck_model"):
        build_bnneck_feature_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]))


def test_bad_backbones_are_rejected_naming_the_argument():
    backbone = keras_hub_resnet("resnet18", input_shape=SHAPE, blocks=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"Received: weights='imagenet', source=None"):
        build_bnneck_model(4, backbone, input_shape=SHAPE, weights="imagenet")
    with pytest.raises(ValueError, match=r"Received: weights=None, source='keras_hub'"):
        build_bnneck_model(4, backbone, input_shape=SHAPE, source="keras_hub")
    with pytest.raises(ValueError, match="Received: backbone=50"):
        build_bnneck_model(4, 50, input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"Unknown backbone\. Received: arch='resnet5'"):
        build_bnneck_model(4, "resnet5", input_shape=SHAPE)


def test_rollback_refine_is_unchanged_under_the_triplet_and_smoothed_loss():
    """The callback only moves weights, learning rates and momentum: a different loss (CE
    with label smoothing + batch-hard triplet, BNNeck head) needs no change to it."""
    model = tiny_bnneck_model()
    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9, nesterov=True, weight_decay=5e-4),
        loss=ReIDLoss(4, label_smoothing=0.1, triplet_weight=1.0),
    )
    partition = BlockPartition.for_model(model)
    assert partition.paths(partition.head_name) and all(
        path.startswith(("bnneck/", "classifier/")) for path in partition.paths("head")
    )
    pretrained = weights_by_path(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *SHAPE)).astype("float32")
    y = np.repeat([0, 1, 2, 3], 2)  # P=4 identities x K=2 images per batch of 8.
    refine = RollbackRefine(partition, period_epochs=1, verbose=0)
    probe = PeriodStartProbe()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[refine, probe], verbose=0)
    assert_period_starts_from_rolled_back_state(
        partition,
        probe,
        pretrained,
        1,
        partition.block_names[1:],
        refine.epoch_records[1]["learning_rates"],
        0.9,
    )
