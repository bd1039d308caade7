"""Tests for keras_rollback.evaluation.activation_maps and its picture."""

import keras
import numpy as np
import pytest
from PIL import Image

from keras_rollback.evaluation.activation_maps import activation_maps
from keras_rollback.evaluation.activation_maps import coarse_activation_maps
from keras_rollback.evaluation.activation_maps import foreground_share
from keras_rollback.evaluation.activation_maps import last_feature_layer
from keras_rollback.evaluation.activation_maps import resize_bilinear
from keras_rollback.evaluation.visualization import activation_map_figure
from keras_rollback.evaluation.visualization import plot_activation_maps

IMAGE_SHAPE = (16, 8, 3)


def nested_reid_like(seed=0):
    """A backbone model nested in a ReID-like model: stem 16x8, b1 8x4, b2 4x2, head."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(IMAGE_SHAPE)
    x = layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.Conv2D(6, 3, strides=2, padding="same", name="b1_conv")(x)
    x = layers.BatchNormalization(name="b1_bn")(x)
    x = layers.ReLU(name="b1_relu")(x)
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="b2_conv")(x)
    x = layers.ReLU(name="b2_out")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    images = keras.Input(IMAGE_SHAPE, name="images")
    pooled = layers.GlobalAveragePooling2D(name="pooled_feature")(backbone(images))
    logits = layers.Dense(3, name="classifier")(layers.Dropout(0.5, name="drop")(pooled))
    return keras.Model(images, logits, name="reid_tiny")


def images(count=3, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *IMAGE_SHAPE)).astype("float32")


def test_maps_have_the_images_size_and_are_non_negative():
    maps = activation_maps(nested_reid_like(), images(3))
    assert maps.shape == (3, 16, 8)
    assert maps.dtype == np.float32
    assert np.all(np.isfinite(maps)) and maps.min() >= 0
    assert maps.std() > 0


def test_default_layer_is_the_last_block_output_inside_the_nested_backbone():
    model = nested_reid_like()
    assert last_feature_layer(model) == "b2_out"
    backbone = model.get_layer("backbone")
    x = images(3)
    expected = np.abs(keras.ops.convert_to_numpy(backbone(x, training=False))).mean(axis=-1)
    np.testing.assert_allclose(coarse_activation_maps(model, x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        activation_maps(model, x), activation_maps(model, x, layer="b2_out"), rtol=0, atol=0
    )


def test_a_named_layer_inside_the_backbone_is_mapped_in_inference_mode():
    model = nested_reid_like()
    backbone = model.get_layer("backbone")
    x = images(4)
    probe = keras.Model(backbone.input, backbone.get_layer("b1_bn").output)
    expected = np.abs(keras.ops.convert_to_numpy(probe(x, training=False))).mean(axis=-1)
    coarse = coarse_activation_maps(model, x, layer="b1_bn", batch_size=3)  # Two batches.
    assert coarse.shape == (4, 8, 4)
    np.testing.assert_allclose(coarse, expected, rtol=1e-5, atol=1e-6)


def one_layer_model():
    """Conv2D 2x2, stride 2, two filters, no bias: a 4x6 image gives a 2x3 map."""
    inputs = keras.Input((4, 6, 1))
    conv = keras.layers.Conv2D(2, 2, strides=2, use_bias=False, name="conv")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((2, 2, 1, 2), "float32")
    kernel[:, :, 0, 0] = 1.0  # Channel 0: sum of the 2x2 patch.
    kernel[0, 0, 0, 1] = -2.0  # Channel 1: -2 x the patch's top-left pixel.
    conv.set_weights([kernel])
    return model


def test_upsampled_map_equals_a_hand_computation_on_a_one_layer_model():
    image = np.arange(24, dtype="float32").reshape(1, 4, 6, 1) - 10.0
    coarse = np.zeros((2, 3))
    for i in range(2):
        for j in range(3):
            patch = image[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 0]
            coarse[i, j] = (abs(patch.sum()) + abs(-2 * patch[0, 0])) / 2
    model = one_layer_model()
    np.testing.assert_allclose(coarse_activation_maps(model, image)[0], coarse, rtol=1e-6)
    maps = activation_maps(model, image)[0]
    # Half-pixel centres: output pixel y sits at (y + 0.5) / 2 - 0.5 in the 2x3 grid,
    # clamped at the edges. Rows 0 and 3 are the coarse rows; rows 1 and 2 mix 3:1 and 1:3.
    rows = np.stack(
        [
            coarse[0],
            0.75 * coarse[0] + 0.25 * coarse[1],
            0.25 * coarse[0] + 0.75 * coarse[1],
            coarse[1],
        ]
    )
    hand = np.stack(
        [
            rows[:, 0],
            0.75 * rows[:, 0] + 0.25 * rows[:, 1],
            0.25 * rows[:, 0] + 0.75 * rows[:, 1],
            0.75 * rows[:, 1] + 0.25 * rows[:, 2],
            0.25 * rows[:, 1] + 0.75 * rows[:, 2],
            rows[:, 2],
        ],
        axis=1,
    )
    np.testing.assert_allclose(maps, hand, rtol=1e-5)
    np.testing.assert_allclose(maps.mean(), hand.mean(), rtol=1e-5)
    # PIL's bilinear enlargement (what torchvision's Resize does) agrees.
    pil = Image.fromarray(coarse.astype("float32"), mode="F").resize((6, 4), Image.BILINEAR)
    np.testing.assert_allclose(maps, np.asarray(pil), rtol=1e-5)


def test_resize_bilinear_keeps_a_constant_map_and_a_same_size_map():
    constant = np.full((2, 3, 2), 7.0)
    np.testing.assert_allclose(resize_bilinear(constant, (9, 5)), 7.0)
    values = np.random.default_rng(0).random((2, 3, 2))
    np.testing.assert_allclose(resize_bilinear(values, (3, 2)), values)


def test_unknown_layer_is_named_with_the_closest_names():
    with pytest.raises(ValueError, match=r"'b2_uot' is not a layer of model 'reid_tiny'.*b2_out"):
        activation_maps(nested_reid_like(), images(1), layer="b2_uot")


def test_a_layer_without_a_feature_map_is_refused():
    with pytest.raises(ValueError, match=r"Layer 'pooled_feature'.*4-D feature map"):
        activation_maps(nested_reid_like(), images(1), layer="pooled_feature")


def test_images_must_be_a_batch():
    with pytest.raises(ValueError, match=r"4-D array"):
        activation_maps(nested_reid_like(), images(1)[0])


def test_foreground_share_on_a_hand_made_map():
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = np.array(
        [
            [[True, False], [False, True]],
            [[True, False], [False, False]],
            [[True, True], [True, True]],
        ]
    )
    shares = foreground_share(maps, masks)
    np.testing.assert_allclose(shares[:2], [5 / 10, 1 / 4])  # A uniform map: the mask's area.
    assert np.isnan(shares[2])  # No activation at all: no share.
    np.testing.assert_allclose(foreground_share(3 * maps[:2], masks[:2]), shares[:2])


def test_foreground_share_checks_its_inputs():
    maps = np.ones((1, 2, 2))
    with pytest.raises(ValueError, match=r"shapes \(1, 2, 2\) and \(1, 2, 3\)"):
        foreground_share(maps, np.ones((1, 2, 3), bool))
    with pytest.raises(ValueError, match="boolean"):
        foreground_share(maps, np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        foreground_share(-maps, np.ones((1, 2, 2), bool))


def test_figure_shows_the_image_then_each_methods_map_with_its_share(tmp_path):
    pictures = np.random.default_rng(0).integers(0, 256, size=(2, 16, 8, 3)).astype("float32")
    coarse = np.random.default_rng(1).random((2, 4, 2)) + 1.0
    maps = {
        "fine_tune": resize_bilinear(coarse, (16, 8)),
        "rollback": resize_bilinear(coarse**2, (16, 8)),
    }
    shares = {"fine_tune": np.array([0.25, 0.5]), "rollback": np.array([0.75, np.nan])}
    figure = activation_map_figure(pictures, maps, shares=shares, row_labels=["a.jpg", "b.jpg"])
    assert len(figure.axes) == 6  # 2 rows x (image, fine_tune, rollback).
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == [
        "a.jpg",
        "fine_tune\non person 25%",
        "rollback\non person 75%",
        "b.jpg",
        "fine_tune\non person 50%",
        "rollback",
    ]
    np.testing.assert_allclose(figure.axes[0].images[0].get_array(), pictures[0] / 255)
    overlay = np.asarray(figure.axes[2].images[1].get_array())  # Rollback's map on image a.
    expected = maps["rollback"][0]
    expected = expected / expected.max()
    np.testing.assert_allclose(overlay, expected, rtol=1e-6)
    path = plot_activation_maps(pictures, maps, tmp_path / "maps" / "figure6.png", shares=shares)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_figure_checks_the_maps_shape():
    pictures = np.zeros((2, 16, 8, 3))
    with pytest.raises(ValueError, match=r"'rollback' have shape \(2, 4, 2\)"):
        activation_map_figure(pictures, {"rollback": np.zeros((2, 4, 2))})
