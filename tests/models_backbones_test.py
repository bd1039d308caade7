"""Tests of keras_rollback/models/backbones.py: sizes against torchvision and the paper, sources, weights."""

import re

import keras
import numpy as np
import pytest

from keras_rollback.block_partition import BlockPartition
from keras_rollback.models.backbones import backbone_preprocessing
from keras_rollback.models.backbones import build_backbone
from keras_rollback.models.backbones import resolve_source
from keras_rollback.models.reid_model import build_reid_model

# torchvision's parameter counts without the final `fc` layer (resnet34: 21,797,672 - 513,000;
# resnet50: 25,557,032 - 2,049,000; resnet101: 44,549,160 - 2,049,000).
TORCHVISION_BACKBONE_PARAMS = {
    "resnet34": 21_284_672,
    "resnet50": 23_508_032,
    "resnet101": 42_500_160,
}
# The paper's conv layers per block (stem, conv2_x..conv5_x), projection shortcuts excluded.
PAPER_BLOCK_CONVS = {
    "resnet34": (1, 6, 8, 12, 6),
    "resnet50": (1, 9, 12, 18, 9),
    "resnet101": (1, 9, 12, 69, 9),
}
SHORTCUT = re.compile(r".*_0_conv/kernel$")


def _block_convs(partition):
    """Conv layers per block, projection shortcuts (`..._0_conv`) excluded."""
    counts = []
    for group in partition.block_names:
        kernels = [p for p in partition.paths(group) if len(partition.shape_of(p)) == 4]
        counts.append(sum(1 for p in kernels if not SHORTCUT.match(p)))
    return tuple(counts)


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("arch", ["resnet34", "resnet50", "resnet101"])
def test_resnet_sizes_match_torchvision_and_paper(arch):
    model = build_reid_model(10, arch, input_shape=(64, 32, 3))
    backbone = model.get_layer(f"{arch}_backbone")
    partition = BlockPartition.for_model(model)
    params = _trainable_params(backbone)
    convs = _block_convs(partition)
    print(
        f"\n{arch}: backbone parameters {params:,} (torchvision {TORCHVISION_BACKBONE_PARAMS[arch]:,}); "
        f"conv layers per block {convs} (paper {PAPER_BLOCK_CONVS[arch]})"
    )
    assert partition.block_names == ("stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x")
    assert params == TORCHVISION_BACKBONE_PARAMS[arch]
    assert convs == PAPER_BLOCK_CONVS[arch]
    assert model.get_layer("pooled_feature").output.shape == (
        None,
        512 if arch == "resnet34" else 2048,
    )


def test_keras_applications_resnet50_has_the_same_blocks():
    model = build_reid_model(10, "resnet50", source="keras_applications", input_shape=(64, 32, 3))
    partition = BlockPartition.for_model(model)
    backbone = model.get_layer("resnet50_backbone")
    # The Caffe layout has torchvision's kernels plus a bias in each of its 53 convolutions.
    print(
        f"\nkeras.applications ResNet50: trainable {_trainable_params(backbone):,}, "
        f"all {backbone.count_params():,}; conv layers per block {_block_convs(partition)}"
    )
    assert _trainable_params(backbone) == TORCHVISION_BACKBONE_PARAMS["resnet50"] + 26_560
    assert _block_convs(partition) == PAPER_BLOCK_CONVS["resnet50"]


def test_inception_v3_partition_covers_every_weight():
    model = build_reid_model(10, "inception_v3", input_shape=(75, 75, 3))
    partition = BlockPartition.for_model(model)
    convs = _block_convs(partition)
    print(
        f"\ninception_v3: backbone parameters {_trainable_params(model.get_layer('inception_v3_backbone')):,}; "
        f"conv layers per block {convs}"
    )
    assert partition.block_names == ("B1", "B2", "B3", "B4")
    assert sum(len(partition.paths(g)) for g in partition.group_names) == len(model.weights)
    assert convs == (5, 21, 44, 24)  # 94 conv layers: stem, mixed0-2, mixed3-7, mixed8-10.
    assert model.get_layer("pooled_feature").output.shape == (None, 2048)


def test_preprocessing_and_default_sources():
    assert resolve_source("resnet34") == "keras_hub"
    assert resolve_source("inception_v3") == "keras_applications"
    assert backbone_preprocessing("resnet50") == "torch"
    assert backbone_preprocessing("resnet101", "keras_applications") == "caffe"
    assert backbone_preprocessing("inception_v3") == "tf"


def test_last_stride_one_doubles_the_final_feature_map():
    images = np.zeros((1, 64, 32, 3), "float32")
    for last_stride, spatial in ((2, (2, 1)), (1, (4, 2))):
        backbone = build_backbone("resnet18", input_shape=(64, 32, 3), last_stride=last_stride)
        assert tuple(backbone(images).shape) == (1, *spatial, 512)


def test_keras_weights_file_round_trip(tmp_path):
    backbone = build_backbone("resnet18", input_shape=(64, 32, 3))
    path = tmp_path / "resnet18.weights.h5"
    backbone.save_weights(path)
    reloaded = build_backbone("resnet18", weights=path)
    for expected, actual in zip(backbone.weights, reloaded.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected)
        )
    with pytest.raises(ValueError, match="does not fit model"):
        build_backbone("resnet34", weights=path)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"arch": "resnet200"}, "Unknown backbone"),
        (
            {"arch": "resnet34", "source": "keras_applications"},
            "keras.applications has no resnet34",
        ),
        ({"arch": "inception_v3", "source": "keras_hub"}, "keras-hub has no inception_v3"),
        ({"arch": "resnet50", "source": "timm"}, "Unknown backbone source"),
        ({"arch": "resnet50", "last_stride": 3}, "Received: last_stride=3"),
        (
            {"arch": "resnet50", "source": "keras_applications", "last_stride": 1},
            "only be changed for keras-hub",
        ),
        ({"arch": "resnet50", "input_shape": (64, 32)}, "Received: input_shape=\\(64, 32\\)"),
        ({"arch": "resnet50", "weights": 3}, "Received: weights=3"),
        ({"arch": "resnet50", "weights": "resnet50.npz"}, "Unknown weight file type"),
        (
            {"arch": "resnet50", "source": "keras_applications", "weights": "r50.pth"},
            "only into keras-hub",
        ),
        (
            {"arch": "resnet34", "weights": "imagenet"},
            "no ImageNet preset for resnet34.*convert_torchvision",
        ),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(**kwargs)


def test_missing_weight_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        build_backbone("resnet50", weights=tmp_path / "missing.pth")


@pytest.mark.network
@pytest.mark.parametrize(
    "arch,source",
    [
        ("resnet50", "keras_hub"),
        ("resnet50", "keras_applications"),
        ("resnet101", "keras_hub"),
        ("inception_v3", None),
    ],
)
def test_imagenet_weights_download_and_load(arch, source):
    backbone = build_backbone(arch, weights="imagenet", source=source, input_shape=(128, 96, 3))
    features = backbone(np.zeros((1, 128, 96, 3), "float32"))
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(features)))
