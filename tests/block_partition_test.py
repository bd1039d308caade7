"""BlockPartition: presets against the paper's block sizes, and every bad-rule error."""

import re

import keras
import keras_hub
import pytest

from keras_rollback import BlockPartition
from testing_models import TINY_BLOCKS, tiny_cnn


def _with_head(backbone):
    inputs = keras.Input(backbone.input_shape[1:])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
    x = keras.layers.Dense(8, name="fc512")(x)
    x = keras.layers.BatchNormalization(name="fc_bn")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="classifier")(x))


def _main_path_convs(partition, shortcut_pattern):
    """Conv layers per block, without 1x1 projection shortcuts (the paper's count)."""
    counts = []
    for block in partition.block_names:
        layers = {
            p.rsplit("/", 1)[0]
            for p in partition.paths(block)
            if p.endswith("/kernel") and len(partition.shape_of(p)) == 4
        }
        counts.append(len([n for n in layers if not re.search(shortcut_pattern, n)]))
    return counts


@pytest.mark.parametrize(
    "application, paper_convs",
    [
        (keras.applications.ResNet50, [1, 9, 12, 18, 9]),
        (keras.applications.ResNet101, [1, 9, 12, 69, 9]),
    ],
)
def test_keras_applications_resnet_preset_matches_paper(application, paper_convs):
    model = _with_head(application(weights=None, include_top=False, input_shape=(32, 32, 3)))
    partition = BlockPartition.for_model(model)
    assert partition.block_names == ("stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x")
    assert _main_path_convs(partition, r"_0_conv$") == paper_convs
    assert partition.paths("stem") == [
        "conv1_conv/kernel", "conv1_conv/bias", "conv1_bn/gamma", "conv1_bn/beta",
        "conv1_bn/moving_mean", "conv1_bn/moving_variance",
    ]
    assert {p.split("/")[0] for p in partition.paths("head")} == {"fc512", "fc_bn", "classifier"}
    # Every weight exactly once, BatchNorm statistics included.
    all_paths = [p for g in partition.group_names for p in partition.paths(g)]
    assert sorted(all_paths) == sorted(w.path for w in model.weights)
    rows = {r["group"]: r for r in partition.table()}
    assert sum(r["trainable_params"] + r["non_trainable_params"] for r in rows.values()) == model.count_params()


def test_keras_hub_resnet34_preset_matches_paper():
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(32, 32, 3),
    )
    partition = BlockPartition.for_model(_with_head(backbone))
    assert partition.block_names == ("stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x")
    assert _main_path_convs(partition, r"_0_conv$") == [1, 6, 8, 12, 6]


def test_inception_v3_preset_follows_paper_table_7():
    backbone = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(75, 75, 3))
    partition = BlockPartition.for_model(_with_head(backbone))
    assert partition.block_names == ("B1", "B2", "B3", "B4")
    layers = [layer.name for layer in backbone.layers]
    first_layer_of = {b: layers.index(partition.paths(b)[0].split("/")[0]) for b in partition.block_names}
    last_layer_of = {b: layers.index(partition.paths(b)[-1].split("/")[0]) for b in partition.block_names}
    # B1 is the stem (5 conv layers); B2..B4 end just before mixed2, mixed7, mixed10.
    assert _main_path_convs(partition, "^$")[0] == 5
    assert last_layer_of["B2"] < layers.index("mixed2") < first_layer_of["B3"]
    assert last_layer_of["B3"] < layers.index("mixed7") < first_layer_of["B4"]
    pools = [i for i, layer in enumerate(backbone.layers) if isinstance(layer, keras.layers.MaxPooling2D)]
    assert last_layer_of["B1"] < pools[1] < first_layer_of["B2"]


def test_explicit_rules_and_summary(capsys):
    model = tiny_cnn()
    partition = BlockPartition(model, blocks=TINY_BLOCKS, head="fc/")
    assert partition.group_names == ("B1", "B2", "B3", "B4", "head")
    assert partition.group_of("b3_bn/moving_mean") == "B3"
    partition.summary()
    out = capsys.readouterr().out
    assert "B1" in out and "head" in out and "non-trainable" in out
    rebuilt = BlockPartition.from_config(model, partition.get_config())
    assert rebuilt.paths("B2") == partition.paths("B2")


@pytest.mark.parametrize(
    "blocks, head, culprit",
    [
        ({"B1": "b1_", "B2": "b2_", "B3": "b3_"}, "fc/", "b4_conv/kernel"),  # uncovered
        ({**TINY_BLOCKS, "B5": "b4_bn"}, "fc/", "b4_bn/gamma"),  # overlapping rules
        ({**TINY_BLOCKS, "B5": "conv9_"}, "fc/", "conv9_"),  # unknown layer name
        ({**TINY_BLOCKS}, "fc/|b1_conv/", "b1_conv/kernel"),  # head overlaps a block
        ({"B1": "b1_[", "B2": "b2_"}, "fc/", r"b1_\["),  # invalid regex
        ({"head": "b1_"}, "fc/", "reserved"),
        ({}, "fc/", "non-empty"),
        (TINY_BLOCKS, [], "fc|head"),
    ],
)
def test_bad_rules_raise_naming_the_culprit(blocks, head, culprit):
    with pytest.raises(ValueError, match=culprit):
        BlockPartition(tiny_cnn(), blocks=blocks, head=head)


def test_model_mismatch_is_reported():
    partition = BlockPartition(tiny_cnn(), blocks=TINY_BLOCKS, head="fc/")
    other = tiny_cnn(num_classes=3)
    inputs = keras.Input((8, 8, 3))
    extra = keras.Model(inputs, keras.layers.Dense(2, name="extra")(other(inputs)))
    with pytest.raises(ValueError, match="extra/kernel"):
        partition.check_model(extra)


def test_for_model_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="No preset partition for model 'tiny_cnn'"):
        BlockPartition.for_model(tiny_cnn())
