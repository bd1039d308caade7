"""keras-hub vision transformers (ViT, DeiT, DINOv2): registry entries, blocks, snapshot, report."""

import keras
import keras_hub
import numpy as np
import pytest

from keras_rollback import BlockPartition
from keras_rollback import PretrainedSnapshot
from keras_rollback.block_partition import NoResolutionBlocksError
from keras_rollback.models import build_backbone
from keras_rollback.models import get_backbone_spec
from keras_rollback.models.transformer_blocks import find_transformer_backbone
from keras_rollback.models.transformer_blocks import group_sizes
from keras_rollback.models.transformer_blocks import transformer_blocks
from keras_rollback.partition_report import partition_table
from keras_rollback.partition_report import print_partition
from keras_rollback.user_error import UserError


def _vit(image_shape=(32, 32, 3), patch_size=8, num_layers=3, hidden_dim=32):
    return keras_hub.models.ViTBackbone(
        image_shape=image_shape,
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        mlp_dim=2 * hidden_dim,
    )


def _deit(num_layers=2):
    return keras_hub.models.DeiTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )


def _dinov2(num_layers=4, registers=2, name=None):
    return keras_hub.models.DINOV2Backbone(
        patch_size=8,
        num_layers=num_layers,
        hidden_dim=32,
        num_heads=2,
        intermediate_dim=64,
        num_register_tokens=registers,
        image_shape=(32, 32, 3),
        position_embedding_shape=(64, 64, 3),  # Interpolated to 32x32 when built.
        name=name,
    )


def _reid(backbone, input_shape=(32, 32, 3)):
    """A ReID-style model around the backbone: token pooling, an embedding, a classifier."""
    inputs = keras.Input(input_shape)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
    x = keras.layers.Dense(16, name="embedding")(x)
    x = keras.layers.BatchNormalization(name="bnneck")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(x), name="reid")


BACKBONES = {
    "vit": lambda: _vit(),
    "vit_64x32_patch16": lambda: _vit(image_shape=(64, 32, 3), patch_size=16, num_layers=4),
    "deit": lambda: _deit(),
    "dinov2_registers": lambda: _dinov2(),
    "dinov2_named": lambda: _dinov2(num_layers=2, registers=0, name="dino"),
}
STEM_WEIGHTS = {
    "vit": {"class_token", "patch_embedding/kernel", "position_embedding/embeddings"},
    "deit": {"class_token", "distillation_token", "position_embedding", "patch_embedding/kernel"},
    "dinov2": {
        "cls_token",
        "mask_token",
        "position_embeddings",
        "interpolated_position_embeddings",
        "projection/kernel",
    },
}


def _assert_every_weight_in_one_block(partition, model):
    groups_of = {}
    for group in partition.group_names:
        for path in partition.paths(group):
            groups_of.setdefault(path, []).append(group)
    paths = [w.path for w in model.weights]
    assert len(paths) == len(set(paths))
    assert sorted(groups_of) == sorted(paths)  # none missing, none extra
    assert all(len(groups) == 1 for groups in groups_of.values())


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_every_weight_in_exactly_one_block(kind):
    backbone = BACKBONES[kind]()
    model = _reid(backbone, (64, 32, 3) if kind == "vit_64x32_patch16" else (32, 32, 3))
    partition = BlockPartition.for_model(model)
    _assert_every_weight_in_one_block(partition, model)
    # 2 to 4 layers: one block each (the default is 4 blocks, at most one per layer).
    expected = ["stem"] + [f"layers_{i}" for i in range(1, backbone.num_layers + 1)]
    assert list(partition.block_names) == expected
    backbone_paths = {w.path for w in backbone.weights}
    head = set(partition.paths("head"))
    assert head == {w.path for w in model.weights} - backbone_paths
    assert {p.split("/")[0] for p in head} == {"embedding", "bnneck", "fc"}
    # The stem: patch embedding, tokens and position embedding(s), nothing else.
    stem = partition.paths("stem")
    family = kind.split("_")[0]
    for name in STEM_WEIGHTS[family]:
        assert any(p.endswith("/" + name) for p in stem), (name, stem)
    if family == "dinov2" and backbone.num_register_tokens:
        assert any(p.endswith("/register_tokens") for p in stem)
    assert not any("/transformer_block_" in p or "/layers_" in p for p in stem)
    # One "resolution" throughout: the number of tokens (DeiT's empty attention-score output
    # is no feature map).
    tokens = backbone.output.shape[1]
    assert {r for _, g, r in partition.layers if g != "head"} == {(tokens,)}
    # The final norm is in the last block, with the last transformer layer.
    last = partition.paths(partition.block_names[-1])
    final_norm = {"vit": "vit_encoder/ln/", "deit": "deit_encoder/ln/", "dinov2": "layernorm/"}
    assert any(final_norm[family] in p for p in last)


@pytest.mark.parametrize("kind", ["vit", "dinov2_registers"])
def test_layer_groups_configure_the_blocks(kind):
    backbone = _vit(num_layers=5) if kind == "vit" else _dinov2(num_layers=5)
    model = _reid(backbone)
    two = BlockPartition.for_model(model, layer_groups=2)
    assert two.block_names == ("stem", "layers_1-3", "layers_4-5")
    _assert_every_weight_in_one_block(two, model)
    one = BlockPartition.for_model(model, layer_groups=1)
    assert one.block_names == ("stem", "layers_1-5")
    five = BlockPartition.for_model(model, layer_groups=5)
    assert five.block_names == ("stem", *(f"layers_{i}" for i in range(1, 6)))
    layer_name = "transformer_block_4" if kind == "vit" else "layers_3"  # 4th layer
    assert all(
        two.group_of(w.path) == "layers_4-5" for w in model.weights if f"/{layer_name}/" in w.path
    )
    for bad in (0, 6, True, 2.0):
        with pytest.raises(ValueError, match="`layer_groups` must be an integer from 1 to"):
            BlockPartition.for_model(model, layer_groups=bad)


def test_group_sizes_put_the_extra_layers_low():
    assert group_sizes(12, 4) == [3, 3, 3, 3]
    assert group_sizes(10, 4) == [3, 3, 2, 2]
    assert group_sizes(24, 4) == [6, 6, 6, 6]
    assert group_sizes(3, 3) == [1, 1, 1]


def test_layer_groups_is_refused_for_a_cnn_backbone():
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))
    with pytest.raises(ValueError, match="`layer_groups` applies to transformer backbones"):
        BlockPartition.for_model(model, layer_groups=2)


def test_a_bare_backbone_has_no_head_and_is_refused():
    backbone = _vit()
    assert find_transformer_backbone(backbone)[0] == "ViTBackbone"
    assert set(transformer_blocks(backbone)) == {"stem", "layers_1", "layers_2", "layers_3"}
    with pytest.raises(ValueError, match="no weights outside its backbone"):
        BlockPartition.for_model(backbone)
    with pytest.raises(ValueError, match="must be a keras-hub ViTBackbone"):
        transformer_blocks(_reid(backbone))


@pytest.mark.parametrize("kind", ["vit", "dinov2_registers"])
def test_by_resolution_refuses_a_transformer_and_points_at_the_registry(kind):
    model = _reid(BACKBONES[kind]())
    with pytest.raises(NoResolutionBlocksError) as caught:
        BlockPartition.by_resolution(model)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "BlockPartition.for_model(model)" in message
    assert "BlockPartition(model, blocks={...}, head=[...])" in message


@pytest.mark.parametrize("kind", ["vit", "deit", "dinov2_registers"])
def test_snapshot_restores_every_block_bit_for_bit(kind, tmp_path):
    model = _reid(BACKBONES[kind]())
    partition = BlockPartition.for_model(model)
    pretrained = {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}
    path = tmp_path / "pretrained.npz"
    PretrainedSnapshot.capture(model, partition).save(path)
    snapshot = PretrainedSnapshot.load(path, partition)
    # Nested variable paths (`vit_encoder/transformer_block_1/mha/query/kernel`) survive the file.
    assert set(snapshot.arrays) == {
        p for block in partition.block_names for p in partition.paths(block)
    }
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(pretrained[weight.path] + rng.normal(size=weight.shape).astype("float32"))
    top = list(partition.block_names[2:])
    snapshot.restore(model, partition, top)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if partition.group_of(weight.path) in top:
            np.testing.assert_array_equal(value, pretrained[weight.path], err_msg=weight.path)
        else:
            assert not np.array_equal(value, pretrained[weight.path]), weight.path
    snapshot.restore(model, partition, partition.block_names)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if partition.group_of(weight.path) != "head":
            np.testing.assert_array_equal(value, pretrained[weight.path], err_msg=weight.path)


def test_report_lists_blocks_layers_and_parameters(capsys):
    model = _reid(_vit(num_layers=4))
    partition = BlockPartition.for_model(model, layer_groups=2)
    rows = {row["group"]: row for row in partition_table(partition)}
    assert list(rows) == ["stem", "layers_1-2", "layers_3-4", "head"]
    # Per transformer layer: ln_1, query, key, value, attention_output, ln_2, dense_1, dense_2.
    assert rows["layers_1-2"]["layers"] == 16 and rows["layers_3-4"]["layers"] == 17
    assert rows["stem"]["conv_layers"] == 1
    total = sum(r["trainable_params"] + r["non_trainable_params"] for r in rows.values())
    assert total == model.count_params()
    for group in ("stem", "layers_1-2", "layers_3-4"):
        size = sum(int(np.prod(partition.shape_of(p))) for p in partition.paths(group))
        assert rows[group]["trainable_params"] == size
    # The encoder layer spans blocks: the report lists its sub-layers, each in its block.
    assert [(name, group) for name, group, _ in partition.layers] == [
        ("vit_patching_and_embedding", "stem"),
        ("vit_encoder/transformer_block_1", "layers_1-2"),
        ("vit_encoder/transformer_block_2", "layers_1-2"),
        ("vit_encoder/transformer_block_3", "layers_3-4"),
        ("vit_encoder/transformer_block_4", "layers_3-4"),
        ("vit_encoder/ln", "layers_3-4"),
        ("embedding", "head"),
        ("bnneck", "head"),
        ("fc", "head"),
    ]
    print_partition(partition)
    printed = capsys.readouterr().out
    assert "layers_3-4" in printed and f"{rows['stem']['trainable_params']:,}" in printed


def test_registry_entries_build_and_partition():
    for arch, family in (
        ("vit_base_patch16", "keras_hub_vit"),
        ("deit_small", "keras_hub_deit"),
        ("dinov2_small", "keras_hub_dinov2"),
    ):
        spec = get_backbone_spec(arch)
        assert spec.family == family and spec.source == "keras_hub"
    vit = get_backbone_spec("vit_base_patch16").weights["vit_base_patch16"]
    assert vit["imagenet"].preset == "vit_base_patch16_224_imagenet"
    assert vit["imagenet21k"].preset == "vit_base_patch16_224_imagenet21k"
    deit = get_backbone_spec("deit_small").weights["deit_small"]
    assert deit["imagenet"].preset == "deit_small_distilled_patch16_224_imagenet"
    assert get_backbone_spec("dinov2_small").weights["dinov2_small"]["lvd142m"].preset == (
        "dinov2_small"
    )
    # DeiT-Ti from its registry configuration, random weights: 12 layers in 4 blocks of 3.
    backbone = build_backbone("deit_tiny", input_shape=(32, 32, 3))
    assert isinstance(backbone, keras_hub.models.DeiTBackbone) and backbone.hidden_dim == 192
    partition = BlockPartition.for_model(_reid(backbone))
    assert partition.block_names == (
        "stem",
        "layers_1-3",
        "layers_4-6",
        "layers_7-9",
        "layers_10-12",
    )
    with pytest.raises(ValueError, match="multiples of 16"):
        build_backbone("deit_tiny", input_shape=(36, 32, 3))
    with pytest.raises(ValueError, match="square images only"):
        build_backbone("dinov2_small", input_shape=(56, 28, 3))
    with pytest.raises(ValueError, match="does not resize its position embedding"):
        build_backbone("vit_base_patch16", weights="imagenet", input_shape=(256, 128, 3))
