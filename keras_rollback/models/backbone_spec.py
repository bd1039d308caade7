"""`BackboneSpec`: everything about one backbone family, and `register_backbone` to add one.

Lookups are in `backbone_registry`, which imports the built-in families first.
"""

import dataclasses
import re
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from keras_rollback.models.weight_source import WeightSource
from keras_rollback.resolution_blocks import all_layers

SOURCES = ("keras_hub", "keras_applications")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One backbone family: builder, block partition, preprocessing and weight sources.

    `keras_rollback/models/backbone_presets.py` holds one entry per family;
    `build_backbone`, `backbone_preprocessing`, the weight loading and
    `BlockPartition.for_model` all read them, so adding a backbone is adding
    one entry (and its test) there.

    The partition is given either as `block_rules(model, paths)`, which
    recognises the family among a model's weight paths and returns its blocks
    (an ordered mapping from block name to rules, see `BlockPartition`) or
    None, or as a `signature` (regular expressions that some layer name of the
    model must fully match, one each) plus `feature_layer`, partitioned by
    resolution (`BlockPartition.by_resolution`).

    Example (a new keras.applications family, one entry):

    ```python
    register_backbone(BackboneSpec(
        family="keras_applications_xception",
        source="keras_applications",
        architectures={"xception": "Xception"},
        build=keras_applications_builder,
        preprocessing="tf",
        weights={"xception": {"imagenet": WeightSource(
            "imagenet", "keras_applications", "keras.applications' Xception", "tf")}},
        signature=("block1_conv1", "block14_sepconv2_act"),
        feature_layer="block14_sepconv2_act",
    ))
    ```

    Args:
        family: String. Unique name of the family.
        source: String. The library that builds it: `"keras_hub"` or
            `"keras_applications"`.
        architectures: Mapping from architecture name (`"resnet50"`) to the
            builder's argument for it (a configuration or a constructor name).
        build: Callable `build(spec, arch, *, input_shape, last_stride, name,
            pretrained)` returning the backbone `keras.Model` (no pooling, no
            classifier); `pretrained` is a `WeightSource` of kind
            `"keras_hub"` or `"keras_applications"` to build with, or None.
        preprocessing: String. Input normalisation of the architecture
            without pre-trained weights (each `WeightSource` states its own).
        weights: Mapping from architecture to a mapping from weights name to
            `WeightSource`. Defaults to `{}`.
        block_rules: Callable or None. See above. Defaults to `None`.
        signature: Tuple of strings. See above. Defaults to `()`.
        feature_layer: String or None. Last backbone layer for the resolution
            partition; None for the last spatial output. Defaults to `None`.
        description: String. One line for the docs. Defaults to `""`.
        block_options: Tuple of strings. Keyword options of `block_rules`
            that `BlockPartition.for_model` passes on (`"layer_groups"` for
            the transformers). Defaults to `()`.
    """

    family: str
    source: str
    architectures: Mapping[str, Any]
    build: Callable[..., Any]
    preprocessing: str
    weights: Mapping[str, Mapping[str, WeightSource]] = dataclasses.field(default_factory=dict)
    block_rules: Callable[..., Any] | None = None
    signature: tuple[str, ...] = ()
    feature_layer: str | None = None
    description: str = ""
    block_options: tuple[str, ...] = ()

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(
                f"Unknown backbone source. Received: source={self.source!r}. Expected one of {list(SOURCES)}."
            )
        if (self.block_rules is None) == (not self.signature):
            raise ValueError(
                f"Backbone family {self.family!r} needs exactly one of `block_rules` and `signature`."
            )
        unknown = sorted(set(self.weights) - set(self.architectures))
        if unknown:
            raise ValueError(f"Weights of unknown architectures in {self.family!r}: {unknown}")

    def weight_source(self, arch, weights):
        """The `WeightSource` named `weights` for `arch`, or a `ValueError` listing the names."""
        available = self.weights.get(arch, {})
        if weights not in available:
            raise ValueError(
                f"No weights {weights!r} for {arch} from {self.source}. Received: arch={arch!r}, "
                f"weights={weights!r}. Available: {sorted(available) or 'none'}, a weight file, or None."
            )
        return available[weights]

    def find_blocks(self, model, paths, **options):
        """The rule blocks of this family in `model`, `{}` for a resolution family found, or None.

        `options` (those named in `block_options`) go to `block_rules`.
        """
        unknown = sorted(set(options) - set(self.block_options))
        if unknown:
            raise ValueError(
                f"Backbone family {self.family!r} takes no partition option {unknown}. "
                f"Its options: {list(self.block_options) or 'none'}."
            )
        if self.block_rules is not None:
            return self.block_rules(model, paths, **options)
        names = {layer.name for layer in all_layers(model)}
        if all(any(re.fullmatch(pattern, n) for n in names) for pattern in self.signature):
            return {}
        return None


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec):
    """Adds a family to the registry (in order: earlier families are found first).

    Args:
        spec: `BackboneSpec` whose `family` is not registered yet.

    Returns:
        `spec`.
    """
    if not isinstance(spec, BackboneSpec):
        raise ValueError(f"Expected a BackboneSpec. Received: {spec!r}")
    if spec.family in _REGISTRY:
        raise ValueError(f"Backbone family {spec.family!r} is already registered.")
    _REGISTRY[spec.family] = spec
    return spec


def registered_specs():
    """The families registered so far, in order (see `backbone_registry` for lookups)."""
    return tuple(_REGISTRY.values())
