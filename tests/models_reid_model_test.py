"""Tests of keras_rollback/models/reid_model.py: head, initialisation, feature model, real-image training."""

import re

import keras
import numpy as np
import pytest
from PIL import Image

from keras_rollback.block_partition import BlockPartition
from keras_rollback.callbacks.rollback_refine import RollbackRefine
from keras_rollback.models.reid_model import build_feature_model
from keras_rollback.models.reid_model import build_reid_model
from keras_rollback.models.torchvision_resnet import keras_hub_resnet
from keras_rollback.optimizers.layerwise_sgd import LayerwiseSGD

MARKET_NAME = re.compile(r"^(\d{4})_c(\d)s\d_\d+_\d+\.jpg$")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], "float32")
IMAGENET_STD = np.array([0.229, 0.224, 0.225], "float32")
SMALL = (64, 32, 3)


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


@pytest.fixture(scope="module")
def resnet34_model():
    keras.utils.set_random_seed(0)
    return build_reid_model(751, "resnet34", input_shape=SMALL)


def test_head_follows_the_authors_code(resnet34_model):
    model = resnet34_model
    head = [layer.name for layer in model.layers[2:]]
    assert head == [
        "pooled_feature",
        "bottleneck_fc",
        "bottleneck_bn",
        "bottleneck_leaky_relu",
        "bottleneck_dropout",
        "classifier",
    ]
    assert model.output.shape == (None, 751)
    assert model.get_layer("bottleneck_leaky_relu").negative_slope == pytest.approx(0.1)
    assert model.get_layer("bottleneck_dropout").rate == 0.5
    bn = model.get_layer("bottleneck_bn")
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.9)  # torch BatchNorm1d defaults.

    fc_kernel = _numpy(model.get_layer("bottleneck_fc").kernel)
    assert fc_kernel.shape == (512, 512)
    # Kaiming normal, fan-out: std = sqrt(2 / 512).
    assert np.std(fc_kernel) == pytest.approx(np.sqrt(2 / 512), rel=0.03)
    assert abs(np.mean(fc_kernel)) < 0.002
    gamma = _numpy(bn.gamma)
    assert np.mean(gamma) == pytest.approx(1.0, abs=0.005)
    assert np.std(gamma) == pytest.approx(0.02, rel=0.15)
    classifier_kernel = _numpy(model.get_layer("classifier").kernel)
    assert np.std(classifier_kernel) == pytest.approx(0.001, rel=0.03)
    for zeros in (
        model.get_layer("bottleneck_fc").bias,
        bn.beta,
        model.get_layer("classifier").bias,
    ):
        np.testing.assert_array_equal(_numpy(zeros), 0.0)


def test_feature_model_shares_the_backbone(resnet34_model):
    model = resnet34_model
    features = build_feature_model(model)
    assert features.output.shape == (None, 512)
    assert {id(w) for w in features.weights} <= {id(w) for w in model.weights}
    images = np.random.default_rng(0).normal(size=(2, *SMALL)).astype("float32")
    backbone = model.get_layer("resnet34_backbone")
    expected = np.mean(_numpy(backbone(images, training=False)), axis=(1, 2))
    np.testing.assert_allclose(
        _numpy(features(images, training=False)), expected, rtol=1e-5, atol=1e-6
    )


def test_options_and_custom_backbone():
    backbone = keras_hub_resnet(
        "resnet50", input_shape=SMALL, widths=(64, 16, 16, 16), blocks=(1, 1, 1, 1)
    )
    model = build_reid_model(
        5,
        backbone,
        input_shape=SMALL,
        dropout=0,
        bottleneck_units=32,
        leaky_relu_alpha=0.2,
        name="tiny",
    )
    assert model.name == "tiny"
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert model.get_layer("bottleneck_fc").kernel.shape == (64, 32)
    assert model.get_layer("bottleneck_leaky_relu").negative_slope == pytest.approx(0.2)
    assert build_feature_model(model).output.shape == (None, 64)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_classes": 1}, "Received: num_classes=1"),
        ({"num_classes": 10, "dropout": 1.0}, "Received: dropout=1.0"),
        ({"num_classes": 10, "bottleneck_units": 0}, "Received: bottleneck_units=0"),
        ({"num_classes": 10, "leaky_relu_alpha": -0.1}, "Received: leaky_relu_alpha=-0.1"),
        ({"num_classes": 10, "backbone": 50}, "Received: backbone=50"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_reid_model(**kwargs)


def test_weights_with_a_backbone_model_are_rejected():
    backbone = keras_hub_resnet("resnet18", blocks=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="Received: weights='imagenet'"):
        build_reid_model(10, backbone, weights="imagenet")
    with pytest.raises(ValueError, match="has no 'pooled_feature' layer"):
        build_feature_model(backbone)


def _read_market_split(folder, size):
    """Images (torch-normalised, resized to `size`) and 0-based labels of one Market-1501 folder."""
    files = sorted(p for p in folder.iterdir() if MARKET_NAME.match(p.name))
    person_ids = [int(MARKET_NAME.match(p.name).group(1)) for p in files]
    label_of = {pid: i for i, pid in enumerate(sorted(set(person_ids)))}
    height, width = size
    images = np.stack(
        [
            np.asarray(
                Image.open(p).convert("RGB").resize((width, height), Image.BICUBIC), "float32"
            )
            / 255.0
            for p in files
        ]
    )
    return (images - IMAGENET_MEAN) / IMAGENET_STD, np.array([label_of[pid] for pid in person_ids])


class _WeightsAtEpochBegin(keras.callbacks.Callback):
    def __init__(self, partition):
        super().__init__()
        self.partition = partition
        self.weights = {}

    def on_epoch_begin(self, epoch, logs=None):
        variables = self.partition.variables(self.model)  # Through self.model: synced on JAX.
        self.weights[epoch] = {v.path: _numpy(v) for v in variables}


def test_fits_real_market1501_images_with_rollback(mini_market1501):
    images, labels = _read_market_split(mini_market1501 / "bounding_box_train", SMALL[:2])
    assert images.shape == (32, *SMALL) and len(set(labels)) == 16
    keras.utils.set_random_seed(0)
    # ResNet-18: ResNet-34's code path and blocks at half the training cost.
    model = build_reid_model(16, "resnet18", input_shape=SMALL)
    partition = BlockPartition.for_model(model)
    assert partition.block_names == ("stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x")
    assert {partition.group_of(w.path) for w in model.weights} == set(partition.group_names)
    assert sum(len(partition.paths(g)) for g in partition.group_names) == len(model.weights)
    assert {p.split("/")[0] for p in partition.paths("head")} == {
        "bottleneck_fc",
        "bottleneck_bn",
        "classifier",
    }

    initial = {w.path: _numpy(w) for w in model.weights}
    model.compile(
        optimizer=LayerwiseSGD(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    probe = _WeightsAtEpochBegin(partition)
    history = model.fit(
        images,
        labels,
        batch_size=8,
        epochs=2,
        shuffle=True,
        verbose=0,
        callbacks=[RollbackRefine(partition, period_epochs=1, periods=2, verbose=0), probe],
    )

    losses = history.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert history.history["period"] == [1, 2]
    # Period 2 keeps the stem (B1) and rolls back conv2_x..conv5_x; the head continues.
    at_period_2 = probe.weights[1]
    for path in partition.paths("conv5_x") + partition.paths("conv2_x"):
        np.testing.assert_array_equal(at_period_2[path], initial[path])
    for path in ("conv1_conv/kernel", "classifier/kernel", "conv1_bn/moving_mean"):
        assert not np.array_equal(at_period_2[path], initial[path]), path
