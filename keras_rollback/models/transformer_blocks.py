"""Blocks of keras-hub's vision transformers (ViT, DeiT, DINOv2): a stem, then groups of layers.

A vision transformer has no feature-map resolution to cut at: every
transformer layer works on the same tokens. Its blocks, lowest first, are:

* `"stem"`: the patch embedding, the class token, the position embedding and
  any other token (DeiT's distillation token, DINOv2's register and mask
  tokens, and DINOv2's stored pre-interpolation position embedding);
* the transformer layers in `layer_groups` groups of consecutive layers
  (default 4, or one per layer where there are fewer), named by their layers counted from 1 at the input:
  `"layers_1-3"`, `"layers_4-6"`, ... (`"layers_5"` for a group of one). The
  first groups get one layer more where the layers do not divide evenly
  (10 layers in 4 groups: 3, 3, 2, 2). The final layer normalisation joins
  the last group.

keras-hub keeps the transformer layers inside one encoder layer
(`vit_encoder/transformer_block_1`, `encoder/layers_0`), so the blocks are
found by walking the backbone's sub-layers, and written as rules on the
variable paths of each sub-layer (`"vit_encoder/transformer_block_1/"`).
Every weight of the backbone is in exactly one block; anything else in the
model (pooling, embedding, classifier) is the head.
"""

import re

import keras

from keras_rollback.resolution_blocks import all_layers

DEFAULT_LAYER_GROUPS = 4
STEM = "stem"


def _vit_parts(backbone):
    embedding = _child_of_class(backbone, "ViTPatchingAndEmbedding")
    encoder = _child_of_class(backbone, "ViTEncoder")
    return [embedding], list(encoder.encoder_layers), [encoder.layer_norm]


def _deit_parts(backbone):
    embedding = _child_of_class(backbone, "DeiTEmbeddings")
    encoder = _child_of_class(backbone, "DeiTEncoder")
    return [embedding], list(encoder.encoder_layers), [encoder.layer_norm]


def _dinov2_parts(backbone):
    return [backbone.embeddings], list(backbone.encoder.layers), [backbone.layernorm]


# keras-hub backbone class name -> (stem layers, transformer layers, final layers) of an instance.
TRANSFORMER_BACKBONES = {
    "ViTBackbone": _vit_parts,
    "DeiTBackbone": _deit_parts,
    "DINOV2Backbone": _dinov2_parts,
}


def find_transformer_backbone(model, class_names=None):
    """The first keras-hub vision-transformer backbone in `model` (itself or nested), or None.

    Recognised by class (`ViTBackbone`, `DeiTBackbone`, `DINOV2Backbone` and
    their subclasses), without importing keras-hub.

    Args:
        model: `keras.Model`.
        class_names: Optional collection of class names to look for.
            Defaults to `None`: all of `TRANSFORMER_BACKBONES`.

    Returns:
        `(class name, backbone)` or `(None, None)`.
    """
    wanted = set(TRANSFORMER_BACKBONES if class_names is None else class_names)
    for layer in [model, *all_layers(model)]:
        name = _keras_hub_class(layer, wanted)
        if name is not None:
            return name, layer
    return None, None


def transformer_blocks(backbone, layer_groups=None, *, paths=None):
    """The blocks of a keras-hub ViT, DeiT or DINOv2 backbone: `{block name: rules}`.

    Args:
        backbone: A keras-hub `ViTBackbone`, `DeiTBackbone` or
            `DINOV2Backbone`.
        layer_groups: Integer from 1 to the number of transformer layers, or
            None. Number of blocks the transformer layers are split into (the
            stem is one more). Defaults to `None`: 4, or one per layer for a
            backbone of fewer layers.
        paths: Optional list of every weight path of the model that contains
            the backbone; the rules are checked to match no other weight of
            it. Defaults to `None`: the backbone's weights.

    Returns:
        An ordered `dict` from block name (`"stem"`, `"layers_1-3"`, ...) to
        a list of rules for `BlockPartition`.
    """
    class_name = _keras_hub_class(backbone, set(TRANSFORMER_BACKBONES))
    if class_name is None:
        raise ValueError(
            "`backbone` must be a keras-hub ViTBackbone, DeiTBackbone or DINOV2Backbone. "
            f"Received: {type(backbone).__name__} {getattr(backbone, 'name', backbone)!r}"
        )
    stem, layers, final = TRANSFORMER_BACKBONES[class_name](backbone)
    if layer_groups is None:
        layer_groups = min(DEFAULT_LAYER_GROUPS, len(layers))
    sizes = group_sizes(len(layers), layer_groups)
    all_paths = [w.path for w in backbone.weights] if paths is None else list(paths)
    blocks = {STEM: _rules(stem, all_paths)}
    start = 0
    for size in sizes:
        group = layers[start : start + size]
        first, last = start + 1, start + size
        name = f"layers_{first}" if first == last else f"layers_{first}-{last}"
        blocks[name] = _rules(group, all_paths)
        start += size
    blocks[name] += _rules(final, all_paths)
    covered = {p for rules in blocks.values() for p in all_paths if _matches(rules, p)}
    missing = [w.path for w in backbone.weights if w.path not in covered]
    if missing:
        raise ValueError(
            f"{class_name} {backbone.name!r} has weights outside its embedding, transformer "
            f"layers and final norm: {missing[:5]}. This keras-hub version lays the backbone "
            "out differently: partition it with explicit rules, "
            "BlockPartition(model, blocks={...}, head=[...])."
        )
    return blocks


def group_sizes(num_layers, layer_groups):
    """Sizes of `layer_groups` groups of consecutive layers, the first ones larger by one."""
    if (
        isinstance(layer_groups, bool)
        or not isinstance(layer_groups, int)
        or not 1 <= layer_groups <= num_layers
    ):
        raise ValueError(
            f"`layer_groups` must be an integer from 1 to the number of transformer layers "
            f"({num_layers}). Received: layer_groups={layer_groups!r}"
        )
    base, extra = divmod(num_layers, layer_groups)
    return [base + (1 if i < extra else 0) for i in range(layer_groups)]


def keras_hub_transformer_rules(class_names):
    """A `BackboneSpec.block_rules` finding one of `class_names` in a model, with `layer_groups`."""

    def block_rules(model, paths, layer_groups=None):
        _, backbone = find_transformer_backbone(model, class_names)
        if backbone is None:
            return None
        return transformer_blocks(backbone, layer_groups, paths=paths)

    block_rules.__doc__ = (
        f"keras-hub {' / '.join(class_names)}: stem, then the transformer layers in "
        "`layer_groups` groups (the final norm with the last)."
    )
    return block_rules


def _keras_hub_class(layer, wanted):
    if not isinstance(layer, keras.layers.Layer):
        return None
    for cls in type(layer).__mro__:
        if cls.__name__ in wanted and cls.__module__.startswith("keras_hub."):
            return cls.__name__
    return None


def _child_of_class(backbone, class_name):
    for layer in backbone.layers:
        if any(cls.__name__ == class_name for cls in type(layer).__mro__):
            return layer
    raise ValueError(
        f"{type(backbone).__name__} {backbone.name!r} has no {class_name} layer: this "
        "keras-hub version lays the backbone out differently. Partition it with explicit "
        "rules: BlockPartition(model, blocks={...}, head=[...])."
    )


def _rules(layers, all_paths):
    """Rules matching exactly the weights of `layers` among `all_paths`.

    One rule per layer, its variable-path directory (`"encoder/layers_0/"`),
    where that matches only the layer's weights; exact paths otherwise.
    """
    rules = []
    for layer in layers:
        own = [w.path for w in layer.weights]
        if not own:
            continue
        directory = _common_directory(own)
        if directory:
            rule = re.escape(directory) + "/"
            if sorted(p for p in all_paths if re.match(rule, p)) == sorted(own):
                rules.append(rule)
                continue
        rules.extend(re.escape(p) + "$" for p in own)
    return rules


def _common_directory(paths):
    split = [p.split("/")[:-1] for p in paths]
    common = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common)


def _matches(rules, path):
    return any(re.match(rule, path) for rule in rules)
