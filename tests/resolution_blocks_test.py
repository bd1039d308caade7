"""ResolutionBlocks on small hand-checked graphs: skips, squeeze-excite, nesting, options, errors."""

import keras
import pytest
from testing_models import skip_cnn
from testing_models import tiny_cnn

from keras_rollback.resolution_blocks import ResolutionBlocks

SKIP_CNN_BLOCKS = {  # sorted layer names
    "B1": ["res_bn", "res_conv", "stem_bn", "stem_conv"],
    "B2": ["down_bn", "down_conv", "down_proj", "se_conv", "trim_bn", "trim_conv"],
    "B3": ["top_bn", "top_conv"],
}


def _names(found):
    return {
        name: sorted(layer.name for layer in layers)
        for name, layers in zip(found.names, found.layers)
    }


def test_skip_connection_squeeze_excite_and_valid_padding():
    found = ResolutionBlocks.find(skip_cnn())
    # The projection shortcut and the squeeze-excite 1x1 conv (a 1x1 output, broadcast back
    # by `se_scale`) are in the 8x8 block; the valid conv's 6x6 does not start a block.
    assert _names(found) == SKIP_CNN_BLOCKS
    assert found.resolutions == (((16, 16),), ((8, 8), (6, 6)), ((3, 3),))
    assert found.feature_layer == "top_relu"


def test_sequential_and_nested_backbone_built_without_input_size():
    sequential = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(2, 3, padding="same", name="c1"),
            keras.layers.Conv2D(2, 3, strides=2, padding="same", name="c2"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(2, name="fc"),
        ]
    )
    found = ResolutionBlocks.find(sequential)
    assert _names(found) == {"B1": ["c1"], "B2": ["c2"]}

    # The backbone's own graph has no sizes: they come from the outer 16x16 input.
    backbone_inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(2, 3, padding="same", name="n1")(backbone_inputs)
    x = keras.layers.Conv2D(3, 3, strides=2, padding="same", name="n2")(x)
    backbone = keras.Model(
        backbone_inputs, sequential.layers[0](x), name="backbone"
    )  # c1 reused at 8x8
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head_fc")(features))
    found = ResolutionBlocks.find(model)
    assert _names(found) == {"B1": ["n1"], "B2": ["c1", "n2"]}
    assert found.resolutions == (((16, 16),), ((8, 8),))
    # A nested model's name is a feature layer: its output.
    assert _names(ResolutionBlocks.find(model, feature_layer="backbone")) == _names(found)


def test_feature_layer_merge_split_exclude_and_names():
    model = skip_cnn()
    found = ResolutionBlocks.find(model, feature_layer="down_add")
    assert _names(found) == {
        "B1": SKIP_CNN_BLOCKS["B1"],
        "B2": ["down_bn", "down_conv", "down_proj", "se_conv"],
    }
    merged = ResolutionBlocks.find(model, merge=[["B2", "B3"]], block_names=["low", "high"])
    assert _names(merged) == {
        "low": SKIP_CNN_BLOCKS["B1"],
        "high": sorted(SKIP_CNN_BLOCKS["B2"] + SKIP_CNN_BLOCKS["B3"]),
    }
    assert merged.resolutions[1] == ((8, 8), (6, 6), (3, 3))
    split = ResolutionBlocks.find(model, split=["trim_conv"])
    assert _names(split) == {
        "B1": SKIP_CNN_BLOCKS["B1"],
        "B2": ["down_bn", "down_conv", "down_proj", "se_conv"],
        "B3": ["trim_bn", "trim_conv"],
        "B4": SKIP_CNN_BLOCKS["B3"],
    }
    assert split.resolutions[1:3] == (((8, 8),), ((6, 6),))
    excluded = ResolutionBlocks.find(model, exclude=["se_conv", "top_bn"])
    assert _names(excluded)["B2"] == sorted(set(SKIP_CNN_BLOCKS["B2"]) - {"se_conv"})
    assert _names(excluded)["B3"] == ["top_conv"]


def test_resolution_without_trainable_weights_joins_the_next_block():
    inputs = keras.Input((8, 8, 3))
    normalized = keras.layers.Normalization(name="normalization")(
        inputs
    )  # non-trainable statistics
    x = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="stem")(normalized)
    x = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="down")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x)))
    found = ResolutionBlocks.find(model)
    assert _names(found) == {"B1": ["normalization", "stem"], "B2": ["down"]}
    assert found.resolutions[0] == ((8, 8), (4, 4))


def _mlp():
    inputs = keras.Input((4,))
    return keras.Model(
        inputs,
        keras.layers.Dense(2, name="fc")(keras.layers.Dense(3, name="hidden")(inputs)),
        name="mlp",
    )


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.conv = keras.layers.Conv2D(2, 3)

    def call(self, x):
        return self.conv(x)


def _two_feature_maps():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, name="left")(inputs))
    b = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, name="right")(inputs))
    return keras.Model(inputs, keras.layers.Concatenate()([a, b]), name="two_maps")


@pytest.mark.parametrize(
    "build, kwargs, match",
    [
        (
            skip_cnn,
            {"feature_layer": "top_rleu"},
            r"feature_layer='top_rleu'.*did you mean 'top_relu'",
        ),
        (skip_cnn, {"feature_layer": 3}, "feature_layer=3"),
        (_mlp, {}, "Model 'mlp' has no layer with a spatial output"),
        (_two_feature_maps, {}, r"several last feature maps \['left', 'right'\]"),
        (skip_cnn, {"exclude": ["se_cnv"]}, r"exclude='se_cnv'.*no layer 'se_cnv'"),
        (skip_cnn, {"exclude": "se_conv"}, "list of layer names"),
        (skip_cnn, {"merge": [["B1", "B3"]]}, "consecutive"),
        (skip_cnn, {"merge": [["B1", "B9"]]}, r"unknown blocks \['B9'\]"),
        (skip_cnn, {"merge": [["B1", "B2"], ["B2", "B3"]]}, "'B2' appears in several"),
        (skip_cnn, {"split": ["stem_conv"]}, "split='stem_conv' already starts a block"),
        (skip_cnn, {"split": ["fc"]}, "split='fc' is not a layer with weights in a block"),
        (skip_cnn, {"split": ["nope"]}, "split='nope' is not a layer of the model"),
        (skip_cnn, {"block_names": ["a", "b"]}, r"name the 3 blocks found \(16x16, 8x8-6x6, 3x3\)"),
        (
            skip_cnn,
            {"feature_layer": "stem_relu", "exclude": ["stem_conv", "stem_bn"]},
            "no layer with weights",
        ),
        (_Subclassed, {}, "Model 'subclassed' \\(_Subclassed\\) has no functional graph"),
        (lambda: "resnet50", {}, "`model` must be a keras.Model"),
    ],
)
def test_errors_name_the_layer_or_argument_at_fault(build, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResolutionBlocks.find(build(), **kwargs)


def test_unbuilt_sizes_of_a_model_without_strides_form_one_block():
    found = ResolutionBlocks.find(tiny_cnn())
    assert _names(found) == {
        "B1": sorted(f"b{i}_{kind}" for i in range(1, 5) for kind in ("conv", "bn"))
    }
