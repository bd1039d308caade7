"""ReID models on keras-hub vision transformers: token pooling, BNNeck, partition, input size."""

import keras
import keras_hub
import numpy as np
import pytest

from keras_rollback import BlockPartition
from keras_rollback.models import MissingWeightsError
from keras_rollback.models import build_bnneck_feature_model
from keras_rollback.models import build_bnneck_model
from keras_rollback.models import build_feature_model
from keras_rollback.models import build_reid_model
from keras_rollback.models import transformer_input_size
from keras_rollback.models.reid_model import TokenPooling
from keras_rollback.models.transformer_input_size import preset_resize_needed
from keras_rollback.models.transformer_input_size import resample_position_embedding
from keras_rollback.models.transformer_input_size import transfer_weights

REID_SHAPE = (32, 16, 3)  # 256x128 scaled down: a 4x2 grid of 8x8 patches.


def _vit(image_shape=REID_SHAPE, use_class_token=True):
    return keras_hub.models.ViTBackbone(
        image_shape=image_shape,
        patch_size=8,
        num_layers=3,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        use_class_token=use_class_token,
    )


def _deit():
    return keras_hub.models.DeiTBackbone(
        image_shape=REID_SHAPE,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
    )


def _dinov2():
    return keras_hub.models.DINOV2Backbone(
        image_shape=(28, 28, 3),
        patch_size=14,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_register_tokens=4,
        position_embedding_shape=(56, 56, 3),
    )


def _images(shape, batch=2):
    return np.random.default_rng(0).uniform(-1, 1, (batch, *shape)).astype("float32")


def _tokens(backbone, images):
    if isinstance(backbone.input, dict):
        images = {"images": images}
    return keras.ops.convert_to_numpy(backbone(images))


def _covers_every_weight_once(model, partition):
    listed = [p for group in partition.group_names for p in partition.paths(group)]
    assert sorted(listed) == sorted(w.path for w in model.weights)
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize(
    "make_backbone, prefix", [(_vit, 1), (_deit, 2), (_dinov2, 5)], ids=["vit", "deit", "dinov2"]
)
@pytest.mark.parametrize("pooling", ["class", "mean"])
def test_reid_model_pools_the_class_token_or_the_patch_tokens(make_backbone, prefix, pooling):
    keras.utils.set_random_seed(0)
    backbone = make_backbone()
    shape = tuple(backbone.input_shape[1:])
    model = build_reid_model(5, backbone, input_shape=shape, token_pooling=pooling, dropout=0.0)
    images = _images(shape)
    assert tuple(model(images).shape) == (2, 5)
    feature = keras.ops.convert_to_numpy(build_feature_model(model)(images))
    tokens = _tokens(backbone, images)
    expected = tokens[:, 0] if pooling == "class" else tokens[:, prefix:].mean(axis=1)
    np.testing.assert_allclose(feature, expected, rtol=1e-5, atol=1e-5)
    pooled = model.get_layer("pooled_feature")
    assert isinstance(pooled, TokenPooling) and pooled.prefix_tokens == prefix


@pytest.mark.parametrize("make_backbone", [_vit, _deit, _dinov2], ids=["vit", "deit", "dinov2"])
def test_bnneck_model_on_a_transformer_gives_logits_and_feature_and_partitions_every_weight(
    make_backbone,
):
    keras.utils.set_random_seed(0)
    backbone = make_backbone()
    shape = tuple(backbone.input_shape[1:])
    model = build_bnneck_model(6, backbone, input_shape=shape, token_pooling="mean")
    images = _images(shape, batch=4)
    assert tuple(model(images).shape) == (4, 6 + 16)
    assert tuple(build_bnneck_feature_model(model)(images).shape) == (4, 16)
    partition = BlockPartition.for_model(model, layer_groups=2)
    assert partition.block_names[0] == "stem" and len(partition.block_names) == 3
    assert partition.paths(partition.head_name) == [
        "bnneck/gamma",
        "bnneck/moving_mean",
        "bnneck/moving_variance",
        "classifier/kernel",
    ]
    _covers_every_weight_once(model, partition)


def test_reid_model_on_a_registered_vit_at_reid_size_partitions_every_weight():
    # Random weights: any multiple of the patch size, here 2:1 like 256x128.
    model = build_reid_model(4, "vit_base_patch16", input_shape=(64, 32, 3), dropout=0.0)
    assert model.get_layer("vit_base_patch16_backbone").output.shape[1:] == (4 * 2 + 1, 768)
    partition = BlockPartition.for_model(model)
    assert partition.block_names == (
        "stem",
        "layers_1-3",
        "layers_4-6",
        "layers_7-9",
        "layers_10-12",
    )
    _covers_every_weight_once(model, partition)


def test_token_pooling_is_checked_and_serialises():
    with pytest.raises(ValueError, match="token_pooling"):
        build_reid_model(4, _vit(), input_shape=REID_SHAPE, token_pooling="max")
    with pytest.raises(ValueError, match="no class token"):
        build_reid_model(4, _vit(use_class_token=False), input_shape=REID_SHAPE)
    layer = TokenPooling("mean", 2, name="pooled_feature")
    assert TokenPooling.from_config(layer.get_config()).get_config() == layer.get_config()


def test_resampled_position_embedding_keeps_the_class_row_and_constant_grids():
    rng = np.random.default_rng(0)
    prefix = rng.normal(size=(2, 3)).astype("float32")
    grid = np.tile(np.array([1.0, -2.0, 0.5], "float32"), (14 * 14, 1))
    resized = resample_position_embedding(np.concatenate([prefix, grid])[None], (14, 14), (16, 8))
    assert resized.shape == (1, 2 + 16 * 8, 3)
    np.testing.assert_array_equal(resized[0, :2], prefix)
    np.testing.assert_allclose(resized[0, 2:], grid[: 16 * 8], atol=1e-5)
    # Same grid: unchanged.
    ramp = rng.normal(size=(1 + 4 * 4, 3)).astype("float32")
    np.testing.assert_allclose(resample_position_embedding(ramp, (4, 4), (4, 4)), ramp, atol=1e-5)


def test_transfer_to_another_input_size_copies_every_other_weight():
    keras.utils.set_random_seed(0)
    square, reid = _vit(image_shape=(32, 32, 3)), _vit()
    transfer_weights(square, reid)
    for source, target in zip(square.weights, reid.weights):
        source, target = (keras.ops.convert_to_numpy(v) for v in (source, target))
        if source.shape == target.shape:
            np.testing.assert_array_equal(source, target)
        else:
            np.testing.assert_allclose(
                target, resample_position_embedding(source, (4, 4), (4, 2)), atol=1e-6
            )


def test_presets_at_another_size_are_resampled_only_for_vit_and_deit():
    assert preset_resize_needed("vit_base_patch16", "imagenet", None, (256, 128, 3)) == 224
    assert preset_resize_needed("deit_small", "imagenet", None, (256, 128, 3)) == 224
    assert preset_resize_needed("vit_base_patch16", "imagenet", None, (224, 224, 3)) is None
    assert preset_resize_needed("vit_base_patch16", None, None, (256, 128, 3)) is None
    assert preset_resize_needed("dinov2_small", "lvd142m", None, (224, 224, 3)) is None
    assert preset_resize_needed("resnet50", "imagenet", None, (256, 128, 3)) is None


def test_a_preset_at_reid_size_is_loaded_at_its_own_size_then_resampled(monkeypatch):
    from keras_rollback.models import backbones

    built = []

    def fake_build_backbone(arch, *, weights, source, input_shape):
        keras.utils.set_random_seed(len(built))
        backbone = _vit(image_shape=input_shape)
        built.append((weights, tuple(input_shape)))
        return backbone

    monkeypatch.setattr(backbones, "build_backbone", fake_build_backbone)
    model = build_bnneck_model(
        3, "vit_base_patch16", weights="imagenet", input_shape=(32, 16, 3), token_pooling="class"
    )
    # The preset at 224x224, then a random one at the ReID size that receives its weights.
    assert built == [("imagenet", (224, 224, 3)), (None, (32, 16, 3))]
    assert model.name == "bnneck_vit_base_patch16"
    embedding = [w for w in model.weights if w.path.endswith("position_embedding/embeddings")]
    assert tuple(embedding[0].shape) == (1 + 4 * 2, 16)


def test_an_unreachable_preset_is_a_missing_weights_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.ViTBackbone, "from_preset", offline)
    with pytest.raises(MissingWeightsError, match="vit_base_patch16_224_imagenet"):
        build_reid_model(4, "vit_base_patch16", weights="imagenet", input_shape=(256, 128, 3))
    assert transformer_input_size.RESIZABLE_FAMILIES == ("keras_hub_vit", "keras_hub_deit")
