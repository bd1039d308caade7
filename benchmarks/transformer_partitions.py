"""Partition tables of ViT-B/16, DeiT-S and DINOv2-S, built from their registry configurations.

No weights are downloaded: each backbone is built with random weights from the
configuration of its registry entry (`keras_rollback/models/backbone_presets.py`),
wrapped in a ReID-style model (token pooling, then a 751-identity classifier as
for Market-1501) and partitioned by `BlockPartition.for_model`. Each table is
followed by the backbone's parameter count against the count keras-hub's preset
metadata states for its weights.

    KERAS_BACKEND=jax python benchmarks/transformer_partitions.py [--layer-groups 4]
"""

import argparse

import keras

from keras_rollback import BlockPartition
from keras_rollback.models import build_backbone
from keras_rollback.models import get_backbone_spec
from keras_rollback.partition_report import print_partition

# (architecture, weights name whose keras-hub preset states the parameter count, input size)
BACKBONES = (
    ("vit_base_patch16", "imagenet", 224),
    ("deit_small", "imagenet", 224),
    ("dinov2_small", "lvd142m", 518),  # The preset's size: its position embedding is 37x37.
)


def preset_params(arch, weights):
    """The parameter count in keras-hub's metadata for the preset of `arch`'s `weights`."""
    import keras_hub

    preset = get_backbone_spec(arch).weights[arch][weights].preset
    for presets in (
        keras_hub.src.models.vit.vit_presets.backbone_presets,
        keras_hub.src.models.deit.deit_presets.backbone_presets,
        keras_hub.src.models.dinov2.dinov2_presets.backbone_presets,
    ):
        if preset in presets:
            return preset, presets[preset]["metadata"]["params"]
    return preset, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-groups", type=int, default=None)
    parser.add_argument("--classes", type=int, default=751)
    args = parser.parse_args(argv)
    for arch, weights, size in BACKBONES:
        backbone = build_backbone(arch, input_shape=(size, size, 3))
        inputs = keras.Input((size, size, 3))
        x = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
        outputs = keras.layers.Dense(args.classes, name="fc")(x)
        model = keras.Model(inputs, outputs, name=f"{arch}_reid")
        partition = BlockPartition.for_model(model, layer_groups=args.layer_groups)
        print(
            f"\n{arch} ({type(backbone).__name__}, {size}x{size} input, random weights; "
            "resolution: tokens per image)"
        )
        print_partition(partition)
        preset, expected = preset_params(arch, weights)
        print(
            f"backbone parameters: {backbone.count_params():,}; keras-hub preset {preset!r} "
            f"metadata: {expected:,}"
            if expected is not None
            else ""
        )


if __name__ == "__main__":
    main()
