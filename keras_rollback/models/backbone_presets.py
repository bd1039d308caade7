"""The registered backbone families: one `BackboneSpec` entry each, weights with provenance.

Order matters for `BlockPartition.for_model`: the first family found in a
model gives its partition.
"""

import re

import keras

from keras_rollback.models.backbone_spec import BackboneSpec
from keras_rollback.models.backbone_spec import register_backbone
from keras_rollback.models.torchvision_resnet import RESNET_CONFIGS
from keras_rollback.models.torchvision_resnet import import_keras_hub
from keras_rollback.models.torchvision_resnet import keras_hub_resnet
from keras_rollback.models.transformer_blocks import keras_hub_transformer_rules
from keras_rollback.models.weight_source import WeightSource
from keras_rollback.resolution_blocks import all_layers

RESNET_STAGES = ("conv2_x", "conv3_x", "conv4_x", "conv5_x")

# --- Builders --------------------------------------------------------------------------------


def keras_hub_resnet_builder(spec, arch, *, input_shape, last_stride, name, pretrained):
    """A keras-hub `ResNetBackbone` with torchvision's ResNet v1.5 layout (or a keras-hub preset)."""
    if pretrained is None:
        return keras_hub_resnet(arch, input_shape=input_shape, last_stride=last_stride, name=name)
    return import_keras_hub().models.ResNetBackbone.from_preset(
        pretrained.preset,
        image_shape=input_shape,
        stackwise_num_strides=[1, 2, 2, last_stride],
        name=name,
    )


def keras_applications_builder(spec, arch, *, input_shape, last_stride, name, pretrained):
    """A keras.applications model without its classifier (`include_top=False`)."""
    if last_stride != 2:
        raise ValueError(
            f"`last_stride` can only be changed for keras-hub ResNets. Received: arch={arch!r}, "
            f"source={spec.source!r}, last_stride={last_stride}"
        )
    constructor = getattr(keras.applications, spec.architectures[arch])
    return constructor(
        include_top=False,
        weights="imagenet" if pretrained is not None else None,
        input_shape=input_shape,
        name=name,
    )


# --- Block rules -----------------------------------------------------------------------------


def keras_hub_resnet_blocks(model, paths):
    """keras-hub `ResNetBackbone` v1 and v2: stem, then `stack0..3` as `conv2_x..conv5_x`."""
    if not any(p.startswith("stack3_block0_") for p in paths):
        return None
    stem = list(
        dict.fromkeys(
            p.rsplit("/", 1)[0] + "/" for p in paths if re.match(r"conv1(_\d+)?_(conv|bn)/", p)
        )
    )
    if not stem:
        return None
    blocks = {"stem": [re.escape(s) for s in stem]}
    for k, stage in enumerate(RESNET_STAGES):
        blocks[stage] = [f"stack{k}_"]
    if any(p.startswith("post_bn/") for p in paths):
        # Pre-activation (v2) backbones end with a BatchNorm on stack3's output.
        blocks["conv5_x"].append("post_bn/")
    return blocks


def _keras_applications_resnet_blocks(paths, pre_activation):
    # keras.applications ResNet v1 and v2 share names (conv1_conv, convK_blockJ_...); v2 ends
    # with a `post_bn` on conv5's output. DenseNet has the same names but no projection
    # shortcut (`_0_conv`).
    required = {"conv1_conv/kernel", "conv2_block1_0_conv/kernel", "conv5_block1_1_conv/kernel"}
    if not required <= set(paths):
        return None
    if any(p.startswith("post_bn/") for p in paths) != pre_activation:
        return None
    blocks = {"stem": ["conv1_"]}
    for k, stage in enumerate(RESNET_STAGES, start=2):
        blocks[stage] = [f"conv{k}_"]
    if pre_activation:
        blocks["conv5_x"].append("post_bn/")
    return blocks


def keras_applications_resnet_blocks(model, paths):
    """keras.applications ResNet50/101/152: `conv1` stem, then `conv2_x..conv5_x`."""
    return _keras_applications_resnet_blocks(paths, pre_activation=False)


def keras_applications_resnet_v2_blocks(model, paths):
    """keras.applications ResNet50V2/101V2/152V2: as v1, with `post_bn` in `conv5_x`."""
    return _keras_applications_resnet_blocks(paths, pre_activation=True)


def inception_v3_blocks(model, paths):
    """The paper's Table 7: `B1` = stem up to the second max-pooling, mixed0-2, mixed3-7, mixed8-10.

    Layer names are generated and change between builds, so the blocks are
    found by position between the `mixedN` layers and written as exact
    layer-name rules for this model.
    """
    layers = list(all_layers(model))
    names = [layer.name for layer in layers]
    if not {"mixed0", "mixed2", "mixed7", "mixed10"} <= set(names):
        return None
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.MaxPooling2D)]
    mixed0 = names.index("mixed0")
    stem_pools = [i for i in pools if i < mixed0]
    if len(stem_pools) != 2:
        return None
    ends = {
        "B1": stem_pools[1],
        "B2": names.index("mixed2"),
        "B3": names.index("mixed7"),
        "B4": names.index("mixed10"),
    }
    backbone_start = names.index("mixed10") - 1
    while backbone_start >= 0 and not isinstance(layers[backbone_start], keras.layers.InputLayer):
        backbone_start -= 1
    blocks = {}
    start = backbone_start + 1
    for block, end in ends.items():
        blocks[block] = [
            re.escape(layer.name) + "/" for layer in layers[start : end + 1] if layer.weights
        ]
        start = end + 1
    return blocks


# --- Weights ---------------------------------------------------------------------------------

_TORCHVISION_RECIPE = (
    "torchvision's original ImageNet-1k recipe: 90 epochs of SGD (momentum 0.9, lr 0.1 divided "
    "by 10 every 30 epochs, batch 256, weight decay 1e-4), random-resized crop 224 and flip"
)
# torchvision's V1 ResNet files (`ResNet*_Weights.IMAGENET1K_V1`): file, top-1 at 224, and
# for ResNet-50 the file of 2019 (the authors' `pretrained=True`), the same weights.
_TORCHVISION_V1 = {
    "resnet18": ("resnet18-f37072fd.pth", 69.758, ()),
    "resnet34": ("resnet34-b627a593.pth", 73.314, ()),
    "resnet50": ("resnet50-0676ba61.pth", 76.130, ("resnet50-19c8e357.pth",)),
    "resnet101": ("resnet101-63fe2227.pth", 77.374, ()),
    "resnet152": ("resnet152-394f9c45.pth", 78.312, ()),
}

# The same files as safetensors, readable without torch: timm's `<arch>.tv_in1k` weights on the
# Hugging Face Hub (torchvision's key names; every repository names its file `model.safetensors`,
# kept in the cache folder as `<arch>.tv_in1k.safetensors`). The SHA-256s are those the Hub
# publishes for the files (their Git LFS pointers); None where none was found: that file's
# SHA-256 is recorded, not checked.
_TIMM_TV_IN1K_SHA256 = {
    "resnet18": "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81",
    "resnet34": None,
    "resnet50": "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888",
    "resnet101": None,
    "resnet152": "15897077afdf4d6334dc0c3f8e6fb483afb3faa9298c139f3c6eb29bca6ae5b2",
}


def _torchvision_v1(arch):
    file_name, top1, equivalent = _TORCHVISION_V1[arch]
    timm_name = f"{arch}.tv_in1k"
    return WeightSource(
        name="torchvision_v1",
        kind="torchvision",
        description=(
            f"torchvision's {arch} IMAGENET1K_V1 weights ({file_name}; as safetensors: timm's "
            f"{timm_name}), the weights of `pretrained=True` that the paper's authors used"
        ),
        preprocessing="torch",
        file_name=file_name,
        url=f"https://download.pytorch.org/models/{file_name}",
        top1=top1,
        recipe=_TORCHVISION_RECIPE,
        equivalent_files=equivalent,
        safetensors_file=f"{timm_name}.safetensors",
        safetensors_url=f"https://huggingface.co/timm/{timm_name}/resolve/main/model.safetensors",
        safetensors_sha256=_TIMM_TV_IN1K_SHA256[arch],
    )


def _keras_hub_timm(arch, preset, timm_name, top1=None):
    return WeightSource(
        name="keras_hub_timm_a1",
        kind="keras_hub",
        description=(
            f"keras-hub preset {preset!r}, converted from timm's {timm_name} (not the "
            "paper's weights)"
        ),
        preprocessing="torch",
        top1=top1,
        recipe=(
            "timm 'ResNet strikes back' A1: 600 epochs, LAMB, binary cross-entropy, "
            "RandAugment, Mixup/CutMix, stochastic depth"
        ),
        preset=preset,
    )


_KERAS_HUB_TIMM = {
    "resnet18": ("resnet_18_imagenet", "resnet18.a1_in1k", None),
    "resnet50": ("resnet_50_imagenet", "resnet50.a1_in1k", 80.4),
    "resnet101": ("resnet_101_imagenet", "resnet101.a1_in1k", None),
    "resnet152": ("resnet_152_imagenet", "resnet152.a1_in1k", None),
}


def _torchvision_resnet_weights():
    weights = {}
    for arch in _TORCHVISION_V1:
        weights[arch] = {"torchvision_v1": _torchvision_v1(arch)}
        if arch in _KERAS_HUB_TIMM:
            source = _keras_hub_timm(arch, *_KERAS_HUB_TIMM[arch])
            # "imagenet": the source library's own ImageNet weights, as before.
            weights[arch].update({source.name: source, "imagenet": source})
    return weights


def _keras_imagenet(description, preprocessing, top1=None):
    return WeightSource(
        name="imagenet",
        kind="keras_applications",
        description=description,
        preprocessing=preprocessing,
        top1=top1,
    )


def _caffe_resnet(depth, top1):
    return _keras_imagenet(
        f"keras.applications' ResNet{depth} 'imagenet' weights: Kaiming He's original Caffe "
        "models (MSRA, 2015) converted to Keras (Caffe preprocessing: BGR minus the mean pixel)",
        "caffe",
        top1,
    )


def _keras_weights(architectures, description, preprocessing):
    return {
        arch: {"imagenet": _keras_imagenet(f"{description} ({constructor})", preprocessing)}
        for arch, constructor in architectures.items()
    }


# --- The families ----------------------------------------------------------------------------

register_backbone(
    BackboneSpec(
        family="torchvision_resnet",
        source="keras_hub",
        architectures=RESNET_CONFIGS,
        build=keras_hub_resnet_builder,
        preprocessing="torch",
        weights=_torchvision_resnet_weights(),
        block_rules=keras_hub_resnet_blocks,
        description=(
            "torchvision's ResNet v1.5 layer for layer, as a keras-hub ResNetBackbone (also "
            "finds any keras-hub ResNetBackbone, v1 or v2, in a model)"
        ),
    )
)

_RESNET = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152"}
register_backbone(
    BackboneSpec(
        family="keras_applications_resnet",
        source="keras_applications",
        architectures=_RESNET,
        build=keras_applications_builder,
        preprocessing="caffe",
        weights={
            "resnet50": {"imagenet": _caffe_resnet(50, 74.9)},
            "resnet101": {"imagenet": _caffe_resnet(101, 76.4)},
            "resnet152": {"imagenet": _caffe_resnet(152, 76.6)},
        },
        block_rules=keras_applications_resnet_blocks,
        description="The original Caffe ResNet v1 (stride on the first 1x1 convolution, biases)",
    )
)

_RESNET_V2 = {
    "resnet50_v2": "ResNet50V2",
    "resnet101_v2": "ResNet101V2",
    "resnet152_v2": "ResNet152V2",
}
register_backbone(
    BackboneSpec(
        family="keras_applications_resnet_v2",
        source="keras_applications",
        architectures=_RESNET_V2,
        build=keras_applications_builder,
        preprocessing="tf",
        weights=_keras_weights(
            _RESNET_V2, "keras.applications' 'imagenet' weights of the pre-activation ResNet", "tf"
        ),
        block_rules=keras_applications_resnet_v2_blocks,
        description="Pre-activation ResNet (He et al., 2016)",
    )
)

register_backbone(
    BackboneSpec(
        family="keras_applications_inception_v3",
        source="keras_applications",
        architectures={"inception_v3": "InceptionV3"},
        build=keras_applications_builder,
        preprocessing="tf",
        weights={
            "inception_v3": {
                "imagenet": _keras_imagenet(
                    "keras.applications' InceptionV3 'imagenet' weights (inputs in [-1, 1])",
                    "tf",
                    77.9,
                )
            }
        },
        block_rules=inception_v3_blocks,
        description="InceptionV3, partitioned as the paper's Table 7",
    )
)

# Families partitioned by resolution (`BlockPartition.by_resolution`): the layer names that
# identify them and the backbone's last layer (so that a built-in classifier is the head).
_EFFICIENTNET = {f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)} | {
    f"efficientnet_v2_{v.lower()}": f"EfficientNetV2{v}"
    for v in ("B0", "B1", "B2", "B3", "S", "M", "L")
}
_MOBILENET_V2 = {"mobilenet_v2": "MobileNetV2"}
_MOBILENET_V3 = {"mobilenet_v3_small": "MobileNetV3Small", "mobilenet_v3_large": "MobileNetV3Large"}
_DENSENET = {f"densenet{d}": f"DenseNet{d}" for d in (121, 169, 201)}
_CONVNEXT = {
    f"convnext_{size}": f"ConvNeXt{size.capitalize()}"
    for size in ("tiny", "small", "base", "large", "xlarge")
}
# (family, architectures, preprocessing, signature, feature layer, weights description)
_RESOLUTION_FAMILIES = (
    (
        "keras_applications_efficientnet",
        _EFFICIENTNET,
        "none",  # The models rescale and normalise [0, 255] inputs themselves.
        ("stem_conv", "top_conv", "top_activation"),
        "top_activation",
        "keras.applications' 'imagenet' EfficientNet weights (input normalisation built in)",
    ),
    (
        "keras_applications_mobilenet_v2",
        _MOBILENET_V2,
        "tf",
        ("Conv1", "expanded_conv_project", "out_relu"),
        "out_relu",
        "keras.applications' 'imagenet' MobileNetV2 weights (inputs in [-1, 1])",
    ),
    (
        "keras_applications_mobilenet_v3",
        _MOBILENET_V3,
        "none",
        ("expanded_conv_depthwise", "conv_1", "conv_1_bn"),
        "conv_1_bn",
        "keras.applications' 'imagenet' MobileNetV3 weights (input rescaling built in)",
    ),
    (
        "keras_applications_densenet",
        _DENSENET,
        "torch",
        ("conv2_block1_0_bn", "pool2_conv", "bn"),
        "bn",
        "keras.applications' 'imagenet' DenseNet weights (torch mean/std preprocessing)",
    ),
    (
        "keras_applications_convnext",
        _CONVNEXT,
        "none",
        (r".+_stem", r".+_stage_3_block_\d+_layer_scale"),
        None,
        "keras.applications' 'imagenet' ConvNeXt weights (input normalisation built in)",
    ),
)
for (
    _family,
    _architectures,
    _preprocessing,
    _signature,
    _feature_layer,
    _description,
) in _RESOLUTION_FAMILIES:
    register_backbone(
        BackboneSpec(
            family=_family,
            source="keras_applications",
            architectures=_architectures,
            build=keras_applications_builder,
            preprocessing=_preprocessing,
            weights=_keras_weights(_architectures, _description, _preprocessing),
            signature=_signature,
            feature_layer=_feature_layer,
            description="Blocks of one feature-map resolution each",
        )
    )

# --- Vision transformers (keras-hub) ---------------------------------------------------------
# Blocks: stem (patch embedding, class/distillation/register tokens, position embedding), then
# the transformer layers in `layer_groups` groups (default 4), the final norm with the last
# (`keras_rollback/models/transformer_blocks.py`). The configurations are those of the
# published models (the Hugging Face configs keras-hub converts its presets from), so that a
# random-weight build has the preset's layout; keras-hub keeps the presets' own config files
# on Kaggle.


def keras_hub_transformer_builder(spec, arch, *, input_shape, last_stride, name, pretrained):
    """A keras-hub ViT, DeiT or DINOv2 backbone: from its configuration, or a keras-hub preset."""
    if last_stride != 2:
        raise ValueError(
            f"`last_stride` can only be changed for keras-hub ResNets. Received: arch={arch!r}, "
            f"last_stride={last_stride}"
        )
    config = dict(spec.architectures[arch])
    class_name = config.pop("class")
    image_shape = _transformer_image_shape(arch, class_name, config, input_shape, pretrained)
    backbone_class = getattr(import_keras_hub().models, class_name)
    if pretrained is None:
        return backbone_class(image_shape=image_shape, name=name, **config)
    return backbone_class.from_preset(pretrained.preset, image_shape=image_shape, name=name)


def _transformer_image_shape(arch, class_name, config, input_shape, pretrained):
    """The input shape: `input_shape`, or where it leaves sizes open the preset's (random: 224)."""
    size = _TRANSFORMER_PRESET_SIZE.get(pretrained.preset, 224) if pretrained else 224
    height, width, channels = input_shape
    if height is None or width is None:
        height, width = size, size
    patch = config["patch_size"]
    if height % patch or width % patch:
        raise ValueError(
            f"{arch} cuts images into {patch}x{patch} patches: the input height and width must "
            f"be multiples of {patch}. Received: input_shape={tuple(input_shape)!r}"
        )
    if class_name == "DINOV2Backbone" and height != width:
        raise ValueError(
            f"keras-hub's DINOV2Backbone takes square images only. Received: "
            f"input_shape={tuple(input_shape)!r}"
        )
    resizes = class_name == "DINOV2Backbone"  # Its position embedding is interpolated.
    if pretrained is not None and not resizes and (height, width) != (size, size):
        raise ValueError(
            f"keras-hub {class_name} does not resize its position embedding: preset "
            f"{pretrained.preset!r} loads at {size}x{size} only. Received: "
            f"input_shape={tuple(input_shape)!r}"
        )
    return (height, width, channels)


def _vit_config(patch, layers, heads, hidden, mlp):
    return {
        "class": "ViTBackbone",
        "patch_size": patch,
        "num_layers": layers,
        "num_heads": heads,
        "hidden_dim": hidden,
        "mlp_dim": mlp,
        "layer_norm_epsilon": 1e-12,
    }


def _deit_config(layers, heads, hidden, intermediate):
    return {
        "class": "DeiTBackbone",
        "patch_size": 16,
        "num_layers": layers,
        "num_heads": heads,
        "hidden_dim": hidden,
        "intermediate_dim": intermediate,
        "layer_norm_epsilon": 1e-12,
    }


def _dinov2_config(layers, heads, hidden, registers=0):
    return {
        "class": "DINOV2Backbone",
        "patch_size": 14,
        "num_layers": layers,
        "num_heads": heads,
        "hidden_dim": hidden,
        "intermediate_dim": 4 * hidden,
        "layer_scale_init_value": 1.0,
        "num_register_tokens": registers,
        "position_embedding_shape": (518, 518, 3),
        "antialias_in_interpolation": registers > 0,
    }


_VIT = {
    "vit_base_patch16": _vit_config(16, 12, 12, 768, 3072),
    "vit_base_patch32": _vit_config(32, 12, 12, 768, 3072),
    "vit_large_patch16": _vit_config(16, 24, 16, 1024, 4096),
    "vit_large_patch32": _vit_config(32, 24, 16, 1024, 4096),
    "vit_huge_patch14": _vit_config(14, 32, 16, 1280, 5120),
}
_DEIT = {
    "deit_tiny": _deit_config(12, 3, 192, 768),
    "deit_small": _deit_config(12, 6, 384, 1536),
    "deit_base": _deit_config(12, 12, 768, 3072),
}
_DINOV2 = {
    "dinov2_small": _dinov2_config(12, 6, 384),
    "dinov2_base": _dinov2_config(12, 12, 768),
    "dinov2_large": _dinov2_config(24, 16, 1024),
    "dinov2_with_registers_small": _dinov2_config(12, 6, 384, registers=4),
    "dinov2_with_registers_base": _dinov2_config(12, 12, 768, registers=4),
    "dinov2_with_registers_large": _dinov2_config(24, 16, 1024, registers=4),
}
# Input side of each preset: the only one ViT and DeiT load at (their position embedding is not
# resized); DINOv2's default (its position embedding is interpolated to any square input).
_TRANSFORMER_PRESET_SIZE: dict[str, int] = {}


def _keras_hub_preset(name, preset, description, preprocessing, recipe, size=224, top1=None):
    _TRANSFORMER_PRESET_SIZE[preset] = size
    return WeightSource(
        name=name,
        kind="keras_hub",
        description=f"keras-hub preset {preset!r}: {description}",
        preprocessing=preprocessing,
        top1=top1,
        recipe=recipe,
        preset=preset,
    )


_VIT_IN21K = "pre-trained on ImageNet-21k (Dosovitskiy et al., 2021; google's checkpoints)"
_VIT_IN1K = f"{_VIT_IN21K}, fine-tuned on ImageNet-1k"


def _vit_weights():
    weights = {}
    for arch, sizes_1k, size_21k in (
        ("vit_base_patch16", (224, 384), 224),
        ("vit_base_patch32", (384,), 224),
        ("vit_large_patch16", (224, 384), 224),
        ("vit_large_patch32", (384,), 224),
        ("vit_huge_patch14", (), 224),
    ):
        sources = {}
        for size in sizes_1k:
            name = "imagenet" if size == 224 else f"imagenet_{size}"
            preset = f"{arch}_{size}_imagenet"
            sources[name] = _keras_hub_preset(
                name, preset, f"ViT {_VIT_IN1K} at {size}x{size}", "tf", _VIT_IN1K, size
            )
        preset = f"{arch}_{size_21k}_imagenet21k"
        sources["imagenet21k"] = _keras_hub_preset(
            "imagenet21k", preset, f"ViT backbone {_VIT_IN21K}", "tf", _VIT_IN21K, size_21k
        )
        weights[arch] = sources
    return weights


_DEIT_RECIPE = (
    "DeiT (Touvron et al., 2021): ImageNet-1k only, 300 epochs of AdamW, RandAugment, "
    "Mixup/CutMix, random erasing, distilled from a RegNetY-16GF teacher"
)


def _deit_weights():
    weights = {}
    for arch in _DEIT:
        size = arch.removeprefix("deit_")
        sources = {
            "imagenet": _keras_hub_preset(
                "imagenet",
                f"deit_{size}_distilled_patch16_224_imagenet",
                "distilled DeiT (facebook's checkpoints) at 224x224",
                "torch",
                _DEIT_RECIPE,
            )
        }
        if size == "base":
            sources["imagenet_384"] = _keras_hub_preset(
                "imagenet_384",
                "deit_base_distilled_patch16_384_imagenet",
                "distilled DeiT (facebook's checkpoints) fine-tuned at 384x384",
                "torch",
                _DEIT_RECIPE,
                size=384,
            )
        weights[arch] = sources
    return weights


_DINOV2_RECIPE = (
    "DINOv2 (Oquab et al., 2023): self-supervised (self-distillation and masked-token "
    "objectives) on the curated LVD-142M images, no labels"
)


def _dinov2_weights():
    return {
        arch: {
            "lvd142m": _keras_hub_preset(
                "lvd142m",
                arch,
                "DINOv2 (facebook's checkpoints; its position embedding is interpolated to the "
                "input size, square only)",
                "torch",
                _DINOV2_RECIPE + (" (with 4 register tokens)" if "registers" in arch else ""),
                size=518,
            )
        }
        for arch in _DINOV2
    }


for _family, _class_name, _architectures, _preprocessing, _weights, _description in (
    (
        "keras_hub_vit",
        "ViTBackbone",
        _VIT,
        "tf",
        _vit_weights(),
        "keras-hub ViTBackbone: stem, then the transformer layers in groups",
    ),
    (
        "keras_hub_deit",
        "DeiTBackbone",
        _DEIT,
        "torch",
        _deit_weights(),
        "keras-hub DeiTBackbone (distilled DeiT): stem, then the transformer layers in groups",
    ),
    (
        "keras_hub_dinov2",
        "DINOV2Backbone",
        _DINOV2,
        "torch",
        _dinov2_weights(),
        "keras-hub DINOV2Backbone: stem, then the transformer layers in groups",
    ),
):
    register_backbone(
        BackboneSpec(
            family=_family,
            source="keras_hub",
            architectures=_architectures,
            build=keras_hub_transformer_builder,
            preprocessing=_preprocessing,
            weights=_weights,
            block_rules=keras_hub_transformer_rules((_class_name,)),
            block_options=("layer_groups",),
            description=_description,
        )
    )
