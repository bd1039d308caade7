"""BlockPartition: presets against the paper's block sizes, blocks by resolution, and every bad-rule error."""

import functools
import re

import keras
import keras_hub
import pytest
from matplotlib import colors
from picture_checks import global_state_kept
from rollback_checks import PeriodStartProbe
from rollback_checks import assert_period_starts_from_rolled_back_state
from testing_models import TINY_BLOCKS
from testing_models import skip_cnn
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import weights_by_path

from keras_rollback import BlockPartition
from keras_rollback import LayerwiseSGD
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine
from keras_rollback.block_partition import NoResolutionBlocksError
from keras_rollback.partition_report import partition_figure
from keras_rollback.partition_report import partition_table
from keras_rollback.partition_report import plot_partition
from keras_rollback.partition_report import print_partition
from keras_rollback.user_error import UserError

RESNET_STAGES = ("stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x")


def _with_head(backbone):
    inputs = keras.Input(backbone.input_shape[1:])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
    x = keras.layers.Dense(8, name="fc512")(x)
    x = keras.layers.BatchNormalization(name="fc_bn")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="classifier")(x))


@functools.cache
def _application(name, size=32):
    """A keras.applications backbone (`weights=None`) under a pooled 5-class head, built once per test run."""
    backbone = getattr(keras.applications, name)(
        weights=None, include_top=False, input_shape=(size, size, 3)
    )
    return _with_head(backbone)


def _layers_of(partition, group):
    return list(dict.fromkeys(p.rsplit("/", 1)[0] for p in partition.paths(group)))


def _assert_each_variable_once(partition, model):
    paths = [p for g in partition.group_names for p in partition.paths(g)]
    assert sorted(paths) == sorted(w.path for w in model.weights)


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
        ("ResNet50", [1, 9, 12, 18, 9]),
        ("ResNet101", [1, 9, 12, 69, 9]),
        ("ResNet152", [1, 9, 24, 108, 9]),
    ],
)
def test_keras_applications_resnet_preset_matches_paper_and_resolution_blocks(
    application, paper_convs
):
    model = _application(application)
    partition = BlockPartition.for_model(model)
    assert partition.block_names == RESNET_STAGES
    # The paper's definition, blocks by resolution, gives exactly the hand-written stages.
    by_resolution = BlockPartition.by_resolution(model, block_names=RESNET_STAGES)
    for group in partition.group_names:
        assert by_resolution.paths(group) == partition.paths(group), group
    assert [r["resolution"] for r in partition_table(by_resolution)] == [
        ((16, 16),),
        ((8, 8),),
        ((4, 4),),
        ((2, 2),),
        ((1, 1),),
        (),
    ]
    assert _main_path_convs(partition, r"_0_conv$") == paper_convs
    assert partition.paths("stem") == [
        "conv1_conv/kernel",
        "conv1_conv/bias",
        "conv1_bn/gamma",
        "conv1_bn/beta",
        "conv1_bn/moving_mean",
        "conv1_bn/moving_variance",
    ]
    assert {p.split("/")[0] for p in partition.paths("head")} == {"fc512", "fc_bn", "classifier"}
    # Every weight exactly once, BatchNorm statistics included.
    all_paths = [p for g in partition.group_names for p in partition.paths(g)]
    assert sorted(all_paths) == sorted(w.path for w in model.weights)
    rows = {r["group"]: r for r in partition_table(partition)}
    assert (
        sum(r["trainable_params"] + r["non_trainable_params"] for r in rows.values())
        == model.count_params()
    )


def test_keras_hub_resnet34_preset_matches_paper():
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(32, 32, 3),
    )
    model = _with_head(backbone)
    partition = BlockPartition.for_model(model)
    assert partition.block_names == RESNET_STAGES
    assert _main_path_convs(partition, r"_0_conv$") == [1, 6, 8, 12, 6]
    # Basic blocks stride in their first convolution: the stages are the resolutions.
    by_resolution = BlockPartition.by_resolution(model, block_names=RESNET_STAGES)
    for group in partition.group_names:
        assert by_resolution.paths(group) == partition.paths(group), group


def test_inception_v3_preset_follows_paper_table_7():
    backbone = keras.applications.InceptionV3(
        weights=None, include_top=False, input_shape=(75, 75, 3)
    )
    partition = BlockPartition.for_model(_with_head(backbone))
    assert partition.block_names == ("B1", "B2", "B3", "B4")
    layers = [layer.name for layer in backbone.layers]
    first_layer_of = {
        b: layers.index(partition.paths(b)[0].split("/")[0]) for b in partition.block_names
    }
    last_layer_of = {
        b: layers.index(partition.paths(b)[-1].split("/")[0]) for b in partition.block_names
    }
    # B1 is the stem (5 conv layers); B2..B4 end just before mixed2, mixed7, mixed10.
    assert _main_path_convs(partition, "^$")[0] == 5
    assert last_layer_of["B2"] < layers.index("mixed2") < first_layer_of["B3"]
    assert last_layer_of["B3"] < layers.index("mixed7") < first_layer_of["B4"]
    pools = [
        i for i, layer in enumerate(backbone.layers) if isinstance(layer, keras.layers.MaxPooling2D)
    ]
    assert last_layer_of["B1"] < pools[1] < first_layer_of["B2"]

    # By resolution: the stem has two (37x37 and 17x17 at this input), merged they are the
    # paper's B1. Only the branch convolutions of the reduction modules mixed3 and mixed8
    # that run before their stride-2 convolution move down a block.
    model = _with_head(backbone)
    assert len(BlockPartition.by_resolution(model).block_names) == 5
    by_resolution = BlockPartition.by_resolution(model, merge=[["B1", "B2"]])
    assert by_resolution.block_names == partition.block_names
    assert by_resolution.paths("B1") == partition.paths("B1")
    for lower, upper, module in (("B2", "B3", "mixed3"), ("B3", "B4", "mixed8")):
        moved = set(_layers_of(by_resolution, lower)) - set(_layers_of(partition, lower))
        assert set(_layers_of(partition, upper)) - set(_layers_of(by_resolution, upper)) == moved
        previous_module = layers.index(f"mixed{int(module[5:]) - 1}")
        assert all(previous_module < layers.index(n) < layers.index(module) for n in moved), moved
        kinds = sorted(type(backbone.get_layer(n)).__name__ for n in moved)
        expected = 2 if module == "mixed3" else 4
        assert kinds == ["BatchNormalization"] * expected + ["Conv2D"] * expected


def test_explicit_rules_and_summary(capsys):
    model = tiny_cnn()
    partition = BlockPartition(model, blocks=TINY_BLOCKS, head="fc/")
    assert partition.group_names == ("B1", "B2", "B3", "B4", "head")
    assert partition.group_of("b3_bn/moving_mean") == "B3"
    print_partition(partition)
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


SIDES = (16, 8, 4, 2, 1)  # a 32x32 input halved five times


@pytest.mark.parametrize(
    "application, resolutions, layer_blocks",
    [
        # The input Normalization (non-trainable statistics, 32x32) joins the stem's block; the
        # 1x1 expansion before a stride-2 depthwise conv runs at the higher resolution; the
        # squeeze-excite convs (1x1 outputs) belong to the block they rescale.
        (
            "EfficientNetB0",
            [((32, 32), (16, 16))] + [((s, s),) for s in SIDES[1:]],
            {
                "normalization": "B1",
                "block2a_expand_conv": "B1",
                "block2a_dwconv": "B2",
                "block2a_se_reduce": "B2",
                "top_conv": "B5",
            },
        ),
        (
            "EfficientNetV2B0",
            [((s, s),) for s in SIDES],
            {
                "block1a_project_conv": "B1",
                "block2a_expand_conv": "B2",
                "block4a_se_reduce": "B4",
                "top_conv": "B5",
            },
        ),
        # A stride-4 stem: four resolutions; each downsampling LayerNorm precedes its stride.
        (
            "ConvNeXtTiny",
            [((s, s),) for s in SIDES[1:]],
            {
                "convnext_tiny_stem/convnext_tiny_stem_conv": "B1",
                "convnext_tiny_downsampling_block_0/convnext_tiny_downsampling_layernorm_0": "B1",
                "convnext_tiny_downsampling_block_0/convnext_tiny_downsampling_conv_0": "B2",
                "convnext_tiny_stage_3_block_2_layer_scale": "B4",
            },
        ),
        (
            "MobileNetV2",
            [((s, s),) for s in SIDES],
            {"Conv1": "B1", "block_1_expand": "B1", "block_1_depthwise": "B2", "Conv_1": "B5"},
        ),
        (
            "MobileNetV3Small",
            [((s, s),) for s in SIDES],
            {
                "conv": "B1",
                "expanded_conv_depthwise": "B2",
                "expanded_conv_squeeze_excite_conv": "B2",
                "conv_1": "B5",
            },
        ),
        # Transition layers (BN, 1x1 conv) run before their average pooling.
        (
            "DenseNet121",
            [((s, s),) for s in SIDES],
            {"conv1_conv": "B1", "pool2_conv": "B2", "conv3_block1_0_bn": "B3", "bn": "B5"},
        ),
    ],
)
def test_modern_keras_applications_presets_are_resolution_blocks(
    application, resolutions, layer_blocks
):
    model = _application(application)
    partition = BlockPartition.for_model(model)
    rows = partition_table(partition)
    assert [r["resolution"] for r in rows] == resolutions + [()]
    assert partition.block_names == tuple(f"B{i}" for i in range(1, len(resolutions) + 1))
    assert set(_layers_of(partition, "head")) == {"fc512", "fc_bn", "classifier"}
    for layer, block in layer_blocks.items():
        assert {
            partition.group_of(p) for p in partition.paths(block) if p.startswith(layer + "/")
        } == {block}, layer
    _assert_each_variable_once(partition, model)
    assert (
        sum(r["trainable_params"] + r["non_trainable_params"] for r in rows) == model.count_params()
    )


def test_resnet_v2_preset_keeps_stage_names_where_resolution_moves_the_strided_unit():
    model = _application("ResNet50V2")
    partition = BlockPartition.for_model(model)
    assert partition.block_names == RESNET_STAGES
    by_resolution = BlockPartition.by_resolution(model, block_names=RESNET_STAGES)
    _assert_each_variable_once(by_resolution, model)
    # keras.applications ResNetV2 strides in the 3x3 conv of a stage's last unit.
    moved = {
        path.rsplit("/", 1)[0]
        for path in partition.paths("conv2_x")
        + partition.paths("conv3_x")
        + partition.paths("conv4_x")
        if by_resolution.group_of(path) != partition.group_of(path)
    }
    last_units = {"conv2_block3", "conv3_block4", "conv4_block6"}
    assert moved == {
        f"{unit}_{layer}" for unit in last_units for layer in ("2_conv", "2_bn", "3_conv")
    }
    assert {by_resolution.group_of(f"{unit}_2_conv/kernel") for unit in last_units} == {
        "conv3_x",
        "conv4_x",
        "conv5_x",
    }


def test_summary_table_and_plot_show_resolution_and_rollback_periods(tmp_path):
    partition = BlockPartition.by_resolution(skip_cnn())
    lines = []
    print_partition(partition, plan=RefinePlan(period_epochs=1, periods=3), print_fn=lines.append)
    rows = {line.split()[0]: line for line in lines[0].splitlines()[3:]}
    assert rows["B1"].split()[1] == "16x16"
    assert rows["B1"].split()[-4:] == ["-", "0.01,", "0.001,", "0.001"]
    assert rows["B2"].split()[1] == "8x8-6x6" and rows["B2"].split()[-4:] == [
        "2",
        "0.01,",
        "0.01,",
        "0.001",
    ]
    assert rows["B3"].split()[-5:] == ["2,", "3", "0.01,", "0.01,", "0.01"]
    assert rows["head"].split()[-4:] == ["-", "0.1,", "0.01,", "0.01"]
    table = partition_table(partition, plan=RefinePlan(period_epochs=1), epochs=2)
    assert [r["rolled_back_in"] for r in table] == [(), (2,), (2,), ()]
    assert [r["learning_rates"] for r in table] == [
        (0.01, 0.001),
        (0.01, 0.01),
        (0.01, 0.01),
        (0.1, 0.01),
    ]
    # Layer-wise decay: each block's rate times 0.5 ** (depth from the top), the head undecayed.
    decayed = partition_table(
        partition, plan=RefinePlan(period_epochs=1, layer_decay=0.5), epochs=2
    )
    assert [r["learning_rates"] for r in decayed] == [
        (0.01 * 0.125, 0.001 * 0.125),
        (0.01 * 0.25, 0.01 * 0.25),
        (0.01 * 0.5, 0.01 * 0.5),
        (0.1, 0.01),
    ]
    assert [(r["layers"], r["conv_layers"]) for r in table] == [(4, 2), (6, 4), (2, 1), (1, 0)]
    assert "rolled back" not in partition_table(partition)[0]
    figure = partition_figure(partition, plan=RefinePlan(period_epochs=1, periods=3))
    (axes,) = figure.axes
    # One bar per layer with weights, as high as its feature-map side, coloured by group.
    bars = axes.patches
    sides = [p.get_y() + p.get_height() for p in bars]
    assert sides == [16] * 4 + [8] * 4 + [6] * 2 + [3] * 2 + [0.5]  # 0.5: the head, no map.
    groups = [g for _, g, _ in partition.layers]
    colours = {g: colors.to_hex(f"C{i}") for i, g in enumerate(partition.group_names)}
    assert [colors.to_hex(p.get_facecolor()) for p in bars] == [colours[g] for g in groups]
    labels = [text.get_text().split("\n") for text in axes.texts]
    assert [label[0] for label in labels] == ["B1", "B2", "B3", "head"]
    assert labels[1][1:2] == ["8x8-6x6"] and labels[2][-2:] == [
        "rolled back: 2, 3",
        "lr: 0.01, 0.01, 0.01",
    ]
    path = tmp_path / "blocks.png"
    with global_state_kept():
        plot_partition(partition, path, plan=RefinePlan(period_epochs=1, periods=3))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_for_model_partition_of_a_nested_backbone_reports_resolutions():
    # Rule-based partitions get resolutions too, through the nested backbone.
    partition = BlockPartition.for_model(_application("ResNet50"))
    assert [r["resolution"] for r in partition_table(partition)] == [
        ((16, 16),),
        ((8, 8),),
        ((4, 4),),
        ((2, 2),),
        ((1, 1),),
        (),
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"feature_layer": "fc"}, "no weights after feature layer 'fc'"),
        ({"block_names": ["B1", "head", "B3"]}, "'head' is reserved"),
        ({"exclude": ["nope"]}, "exclude='nope'"),
    ],
)
def test_by_resolution_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockPartition.by_resolution(skip_cnn(), **kwargs)


def test_by_resolution_of_one_resolution_points_at_the_registry_and_rules():
    # tiny_cnn has no stride: one resolution, so one block and nothing to roll back.
    with pytest.raises(NoResolutionBlocksError, match="keeps one resolution \\(8x8\\)") as caught:
        BlockPartition.by_resolution(tiny_cnn())
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    assert "BlockPartition.for_model(model)" in str(caught.value)
    assert "BlockPartition(model, blocks={...}, head=[...])" in str(caught.value)
    # Asked for, blocks within one resolution are fine.
    split = BlockPartition.by_resolution(tiny_cnn(), split=["b3_conv"])
    assert split.block_names == ("B1", "B2")


MOMENTUM = 0.9


@pytest.mark.parametrize(
    "build, input_shape, periods",
    [
        (skip_cnn, (16, 16, 3), 3),
        (lambda: _application("EfficientNetB0"), (32, 32, 3), 2),
    ],
    ids=["skip_cnn", "EfficientNetB0"],
)
def test_rolling_back_run_on_resolution_blocks(build, input_shape, periods):
    model = build()
    partition = (
        BlockPartition.for_model(model)
        if model.name != "skip_cnn"
        else BlockPartition.by_resolution(model)
    )
    model.compile(
        optimizer=LayerwiseSGD(momentum=MOMENTUM, nesterov=True, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    pretrained = weights_by_path(model)
    x, y = tiny_data(n=8, num_classes=3, input_shape=input_shape)
    refine = RollbackRefine(partition, period_epochs=1, periods=periods, verbose=0)
    probe = PeriodStartProbe()
    model.fit(
        x, y, batch_size=4, epochs=periods, shuffle=False, callbacks=[refine, probe], verbose=0
    )
    for start in range(1, periods):
        rolled_back = partition.block_names[start:]
        assert refine.epoch_records[start]["rolled_back"] == rolled_back
        rates = refine.epoch_records[start]["learning_rates"]
        assert_period_starts_from_rolled_back_state(
            partition, probe, pretrained, start, rolled_back, rates, MOMENTUM
        )


@pytest.mark.parametrize("pre_activation", [False, True], ids=["v1", "v2"])
def test_keras_hub_bottleneck_resnet_preset_and_resolution_blocks(pre_activation):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        use_pre_activation=pre_activation,
        image_shape=(32, 32, 3),
    )
    model = _with_head(backbone)
    partition = BlockPartition.for_model(model)
    assert set(_layers_of(partition, "head")) == {"fc512", "fc_bn", "classifier"}
    if pre_activation:
        assert partition.group_of("post_bn/gamma") == "conv5_x"
    by_resolution = BlockPartition.by_resolution(model, block_names=RESNET_STAGES)
    # keras-hub bottlenecks stride in the 3x3 conv (torchvision's v1.5): the 1x1 reduction
    # before it runs at the higher resolution, one block down.
    moved = {
        w.path.rsplit("/", 1)[0]
        for w in model.weights
        if partition.group_of(w.path) != by_resolution.group_of(w.path)
    }
    expected = {f"stack{k}_block0_{layer}" for k in (1, 2, 3) for layer in ("1_conv", "1_bn")}
    if pre_activation:
        expected = {
            f"stack{k}_block0_{layer}"
            for k in (1, 2, 3)
            for layer in ("pre_activation_bn", "1_conv", "1_bn")
        }
    assert moved == expected


def test_deprecated_report_methods_warn_and_delegate():
    partition = BlockPartition.by_resolution(skip_cnn())
    with pytest.warns(DeprecationWarning, match="partition_table"):
        assert partition.table() == partition_table(partition)
