"""The backbone registry: lookups, the partition found through it, and adding a family."""

import dataclasses

import keras
import pytest

from keras_rollback import BlockPartition
from keras_rollback.models import BackboneSpec
from keras_rollback.models import WeightSource
from keras_rollback.models import backbone_preprocessing
from keras_rollback.models import backbone_spec as registry
from keras_rollback.models import backbone_specs
from keras_rollback.models import build_backbone
from keras_rollback.models import get_backbone_spec
from keras_rollback.models import register_backbone
from keras_rollback.models.backbone_presets import keras_applications_builder


def _with_head(backbone, input_shape):
    inputs = keras.Input(input_shape)
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def test_every_weight_source_says_what_it_is():
    for spec in backbone_specs():
        assert set(spec.weights) <= set(spec.architectures), spec.family
        for arch, sources in spec.weights.items():
            for name, source in sources.items():
                record = source.provenance()
                assert record["description"] and record["preprocessing"], (arch, name)
                if source.kind == "torchvision":
                    assert source.file_name.startswith(arch + "-") and source.top1 is not None
                    assert source.url.endswith("/" + source.file_name)
    torchvision = get_backbone_spec("resnet50").weights["resnet50"]["torchvision_v1"]
    assert torchvision.file_name == "resnet50-0676ba61.pth"
    assert torchvision.equivalent_files == ("resnet50-19c8e357.pth",)


def test_lookups_and_their_errors():
    assert get_backbone_spec("resnet50").family == "torchvision_resnet"
    assert get_backbone_spec("resnet50", "keras_applications").family == (
        "keras_applications_resnet"
    )
    with pytest.raises(ValueError, match=r"Unknown backbone\. Received: arch='resnet200'"):
        get_backbone_spec("resnet200")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(get_backbone_spec("resnet50"))
    with pytest.raises(ValueError, match="exactly one of `block_rules` and `signature`"):
        dataclasses.replace(get_backbone_spec("resnet50"), signature=("conv1",))
    with pytest.raises(ValueError, match="kind"):
        WeightSource("x", "timm", "a description", "torch")


def test_a_new_backbone_is_one_entry(monkeypatch):
    """The docs' example (docs/backbones.md): Xception from keras.applications."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    architectures = {"xception": "Xception"}
    register_backbone(
        BackboneSpec(
            family="keras_applications_xception",
            source="keras_applications",
            architectures=architectures,
            build=keras_applications_builder,
            preprocessing="tf",
            weights={
                "xception": {
                    "imagenet": WeightSource(
                        "imagenet", "keras_applications", "keras.applications' Xception", "tf"
                    )
                }
            },
            signature=("block1_conv1", "block14_sepconv2_act"),
            feature_layer="block14_sepconv2_act",
        )
    )
    backbone = build_backbone("xception", input_shape=(71, 71, 3))
    assert backbone_preprocessing("xception", weights="imagenet") == "tf"
    partition = BlockPartition.for_model(_with_head(backbone, (71, 71, 3)))
    assert partition.block_names[0] == "B1" and len(partition.block_names) >= 4
    assert {p.split("/")[0] for p in partition.paths("head")} == {"fc"}
