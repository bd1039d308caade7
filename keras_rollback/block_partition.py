"""`BlockPartition`: which backbone block (or the head) each model variable belongs to."""

import re
import warnings
from collections.abc import Mapping
from collections.abc import Sequence

from keras_rollback import partition_report
from keras_rollback.models import backbone_registry
from keras_rollback.resolution_blocks import ResolutionBlocks
from keras_rollback.resolution_blocks import format_resolution
from keras_rollback.resolution_blocks import layer_resolutions
from keras_rollback.user_error import UserError

HEAD = "head"


class NoResolutionBlocksError(UserError, ValueError):
    """`BlockPartition.by_resolution` on a model whose feature maps never change resolution.

    A vision transformer keeps one token grid from its patch embedding to its
    last layer (and a CNN without strides keeps one feature-map size), so a
    partition by resolution would be a single block: nothing to roll back.
    The message points at the registry (`BlockPartition.for_model`) and at
    explicit rules.
    """


class BlockPartition:
    """Assigns every weight of a model to one backbone block or to the head.

    Rolling-back refine-tuning (Ro et al., AAAI 2019) splits a pre-trained
    backbone into blocks `B1..BN`, ordered from the input, plus a newly
    initialised head ("FC"). After each training period the low blocks keep
    their weights and the high blocks are rolled back to their pre-trained
    values; the head is never rolled back.

    A partition is built from rules: regular expressions matched with
    `re.match` (so at the start) against each weight's path, which begins with
    the name of the layer that owns it (`"conv2_block1_1_conv/kernel"`). A plain
    layer-name prefix such as `"conv2_"` is therefore a valid rule. Every weight
    (trainable or not: BatchNorm moving statistics roll back too) must match
    the rules of exactly one group; an unmatched weight, a weight matched by two
    groups, or a rule that matches nothing is a `ValueError` naming it.

    `BlockPartition.for_model(model)` builds the partition of a known backbone
    (keras.applications ResNet50/101/152 and ResNet50V2/101V2/152V2,
    InceptionV3, EfficientNet/V2, ConvNeXt, MobileNetV2/V3, DenseNet, keras-hub
    `ResNetBackbone`, and the keras-hub vision transformers `ViTBackbone`,
    `DeiTBackbone` and `DINOV2Backbone`), and puts every weight outside the
    backbone into the head. `BlockPartition.by_resolution(model)` partitions
    any functional or Sequential CNN by the resolution of its feature maps,
    the paper's definition of a block.

    `keras_rollback.partition_report` shows each block's feature-map
    resolution, size and, given a `RefinePlan`, the periods that roll it back
    (`print_partition`, `partition_table`, `plot_partition`).

    Example:

    ```python
    backbone = keras.applications.ResNet50(include_top=False, weights=None)
    inputs = keras.Input((288, 144, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(751, name="fc")(x))
    partition = BlockPartition.for_model(model)
    # Equivalent explicit rules:
    partition = BlockPartition(
        model,
        blocks={"stem": "conv1_", "conv2_x": "conv2_", "conv3_x": "conv3_",
                "conv4_x": "conv4_", "conv5_x": "conv5_"},
        head=["fc/"],
    )
    print_partition(partition)  # from keras_rollback.partition_report
    ```

    Args:
        model: `keras.Model`. The built model to partition.
        blocks: Ordered mapping from block name to one rule or a list of
            rules, lowest block first.
        head: One rule or a list of rules for the head (never rolled back).
        head_name: String. Name of the head group. Defaults to `"head"`.
    """

    def __init__(self, model, blocks, head, head_name=HEAD):
        if not isinstance(blocks, Mapping) or not blocks:
            raise ValueError(
                "`blocks` must be a non-empty mapping from block name to rules. "
                f"Received: blocks={blocks!r}"
            )
        if head_name in blocks:
            raise ValueError(
                f"Block name {head_name!r} is reserved for the head. "
                f"Received: blocks={list(blocks)}"
            )
        self.block_names = tuple(blocks)
        self.head_name = head_name
        self.rules = {name: _as_rules(name, rules) for name, rules in blocks.items()}
        self.rules[head_name] = _as_rules(head_name, head)
        self.model_name = model.name
        self._paths, self._shapes, self._group_of_path = _assign(model, self.rules)
        # (layer name, group, resolution) of each layer with weights, in graph order; a layer
        # whose weights are in several groups (a transformer encoder) by its sub-layers.
        self._layers = [
            (name, group, resolution)
            for layer, resolution in layer_resolutions(model)
            for name, group in _layer_groups(layer, self._group_of_path)
        ]

    @property
    def group_names(self):
        """Block names in order, then the head's."""
        return self.block_names + (self.head_name,)

    def paths(self, group):
        """Variable paths of one group, in model order."""
        self._check_group(group)
        return [p for p in self._paths if self._group_of_path[p] == group]

    def shape_of(self, variable_path):
        """Shape of a partitioned variable, as recorded when the partition was built."""
        self.group_of(variable_path)
        return self._shapes[variable_path][0]

    def group_of(self, variable_path):
        """Name of the group a variable path belongs to."""
        try:
            return self._group_of_path[variable_path]
        except KeyError:
            raise ValueError(
                f"Variable {variable_path!r} is not part of this partition of "
                f"model {self.model_name!r}."
            ) from None

    def variables(self, model, groups=None):
        """The weights of `model` in `groups` (all groups when None), in model order.

        Looks the weights up afresh, so pass `self.model` from a callback (on
        JAX that syncs the trainer's state into the variables first).
        """
        self.check_model(model)
        wanted = set(self.group_names if groups is None else groups)
        for group in wanted:
            self._check_group(group)
        return [w for w in model.weights if self._group_of_path[w.path] in wanted]

    def check_model(self, model):
        """Raises `ValueError` unless `model` has exactly the partitioned weights."""
        paths = [w.path for w in model.weights]
        if paths == self._paths:
            return
        missing = sorted(set(self._paths) - set(paths))
        extra = sorted(set(paths) - set(self._paths))
        raise ValueError(
            f"Model {model.name!r} does not match the partition built for model "
            f"{self.model_name!r}: weights missing from the model: {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}; weights not in the partition: "
            f"{extra[:5]}{' ...' if len(extra) > 5 else ''}."
        )

    @property
    def layers(self):
        """`(layer name, group, resolution)` of each layer with weights, in graph order.

        The resolution is the layer's output spatial size (a tuple), or None
        where the model has no functional graph or the output is not spatial.
        """
        return tuple(self._layers)

    def is_trainable(self, variable_path):
        """Whether a partitioned variable was trainable when the partition was built."""
        self.group_of(variable_path)
        return self._shapes[variable_path][1]

    def table(self, plan=None, epochs=None):
        """Deprecated: use `keras_rollback.partition_report.partition_table(partition, ...)`."""
        _deprecated("table", "partition_table")
        return partition_report.partition_table(self, plan, epochs)

    def summary(self, plan=None, epochs=None, print_fn=None):
        """Deprecated: use `keras_rollback.partition_report.print_partition(partition, ...)`."""
        _deprecated("summary", "print_partition")
        partition_report.print_partition(self, plan, epochs, print_fn=print_fn)

    def plot(self, path, plan=None, epochs=None):
        """Deprecated: use `keras_rollback.partition_report.plot_partition(partition, path, ...)`."""
        _deprecated("plot", "plot_partition")
        partition_report.plot_partition(self, path, plan, epochs)

    def get_config(self):
        return {
            "blocks": {name: list(self.rules[name]) for name in self.block_names},
            "head": list(self.rules[self.head_name]),
            "head_name": self.head_name,
        }

    @classmethod
    def from_config(cls, model, config):
        """Rebuilds a partition of `model` from `get_config()`'s rules."""
        return cls(model, **config)

    @classmethod
    def for_model(cls, model, *, layer_groups=None):
        """The partition of a registered backbone found in `model`; other weights form the head.

        A lookup in the registry of backbone families
        (`keras_rollback/models/backbone_presets.py`, see `BackboneSpec`): the
        first family found gives the blocks, by its rules or by resolution up
        to its feature layer. Registered today (searched through nested models):
        keras.applications ResNet50/101/152 (stem = `conv1`, then
        `conv2_x`..`conv5_x`), ResNet50V2/101V2/152V2 (the same, `post_bn` in
        `conv5_x`), keras-hub `ResNetBackbone` v1 and v2 (stem, then
        `stack0`..`stack3` named `conv2_x`..`conv5_x`; v2's `post_bn` in
        `conv5_x`), and keras.applications InceptionV3 (`B1` =
        stem up to the second max-pooling, `B2` = mixed0-2, `B3` = mixed3-7,
        `B4` = mixed8-10, the paper's Table 7). InceptionV3 layer names are
        generated and change between builds, so its blocks are found by layer
        position between the `mixedN` layers and then written as exact
        layer-name rules for this model.

        The modern keras.applications backbones get `by_resolution` blocks
        `B1..BN` (one per feature-map resolution), cut at their last
        backbone layer so that a classifier built in (`include_top=True`)
        forms the head: EfficientNetB0-B7 and EfficientNetV2 (`top_activation`;
        five blocks, the input `Normalization` in `B1`), MobileNetV2
        (`out_relu`), MobileNetV3Small/Large (`conv_1_bn`), DenseNet121/169/201
        (`bn`) and ConvNeXt (its last stage, with the final `LayerNormalization`
        of `include_top=False`).

        The keras-hub vision transformers `ViTBackbone`, `DeiTBackbone` and
        `DINOV2Backbone` (found by class, also inside a wrapper model) have no
        resolution to cut at: their blocks are `stem` (patch embedding, class
        and other tokens, position embedding), then the transformer layers in
        `layer_groups` groups of consecutive layers, named by the layers they
        hold counted from 1 (`layers_1-3`, `layers_4-6`, ...; the final norm
        with the last group). See `keras_rollback/models/transformer_blocks.py`.

        Args:
            model: `keras.Model` containing one of the backbones above.
            layer_groups: Optional integer. For the transformers: the number of
                blocks the transformer layers form (1 to the number of
                layers; the first groups get one layer more where they do not
                divide evenly). Defaults to `None`: 4 (one per layer for fewer
                layers). Other backbones refuse it.

        Returns:
            A `BlockPartition`.
        """
        options = {} if layer_groups is None else {"layer_groups": layer_groups}
        spec, blocks = backbone_registry.find_backbone(model, **options)
        if spec is None:
            families = ", ".join(s.family for s in backbone_registry.backbone_specs())
            raise ValueError(
                f"No preset partition for model {model.name!r}: it contains no registered "
                f"backbone ({families}; keras.applications ResNet/ResNetV2/InceptionV3/"
                "EfficientNet/MobileNetV2/V3/DenseNet/ConvNeXt, a keras-hub ResNetBackbone, "
                "ViTBackbone, DeiTBackbone or DINOV2Backbone). Use "
                "BlockPartition.by_resolution(model), explicit rules: "
                "BlockPartition(model, blocks={...}, head=[...]), or register a BackboneSpec."
            )
        if set(options) - set(spec.block_options):
            raise ValueError(
                f"`layer_groups` applies to transformer backbones; model {model.name!r} holds "
                f"a {spec.family} backbone, whose blocks are fixed. Received: "
                f"layer_groups={layer_groups!r}"
            )
        if not blocks:
            return cls.by_resolution(model, feature_layer=spec.feature_layer)
        paths = [w.path for w in model.weights]
        head_layers = _ordered_unique(
            p.rsplit("/", 1)[0]
            for p in paths
            if not any(re.match(r, p) for rules in blocks.values() for r in rules)
        )
        if not head_layers:
            raise ValueError(
                f"Model {model.name!r} has no weights outside its backbone: a "
                "rolling-back model needs a new head (classifier) that is never "
                "rolled back."
            )
        return cls(model, blocks=blocks, head=[re.escape(n) + "/" for n in head_layers])

    @classmethod
    def by_resolution(
        cls,
        model,
        *,
        feature_layer=None,
        merge=None,
        split=None,
        exclude=None,
        block_names=None,
        head_name=HEAD,
    ):
        """Partitions a CNN into blocks of one feature-map resolution each, the paper's definition.

        Follows the functional graph from the input to `feature_layer` (into
        nested functional and Sequential models, so a backbone inside a ReID
        model works) and starts a new block wherever the resolution of the
        layers' outputs drops; every weight after the feature layer (pooling,
        classifier) and of the excluded layers forms the head. See
        `ResolutionBlocks` for the exact rules (residual adds and
        squeeze-and-excitation branches belong to the block of their output,
        valid-padding border trims do not start a block, a resolution without
        trainable weights joins the next block). The result is an ordinary
        rule-based partition: `get_config()` lists each block's layers.

        For keras.applications ResNet50/101/152 this gives exactly
        `for_model`'s stem, conv2_x..conv5_x (with `block_names`). Where a
        network's stages are named differently from where its resolution
        drops, the two differ, and `for_model` keeps the names:

        * InceptionV3 gives five resolutions: the stem has two (stride-2 conv
          and max-pooling each halve it), then mixed0-2, mixed3-7, mixed8-10.
          The paper's B1..B4 (Table 7) put the whole stem in B1:
          `merge=[["B1", "B2"]]`. The reduction modules mixed3 and mixed8 still
          differ: the convolutions of their branches before the stride-2
          convolution (2 in mixed3, 4 in mixed8, with their BatchNorms) run at
          the higher resolution and so belong to the block below, while the
          paper and `for_model` cut at the `mixedN` layers.
        * keras.applications ResNetV2 strides in the last unit of a stage, so
          that unit's 3x3 and last 1x1 convolution move to the next block.
        * ResNets that stride in the 3x3 convolution (keras-hub, torchvision
          v1.5) move the first unit's 1x1 reduction of conv3_x..conv5_x down.
        * A network built with `last_stride=1` has conv4_x and conv5_x at one
          resolution: use `split=["conv5_block1_1_conv"]` to separate them.

        Example:

        ```python
        backbone = keras.applications.EfficientNetB0(include_top=False, weights=None)
        inputs = keras.Input((224, 224, 3))
        x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
        model = keras.Model(inputs, keras.layers.Dense(200, name="fc")(x))
        partition = BlockPartition.by_resolution(model)  # B1..B5: 112, 56, 28, 14, 7
        print_partition(partition, plan=RefinePlan(period_epochs=40, periods=4))
        ```

        Args:
            model: Built functional or Sequential `keras.Model`.
            feature_layer: Optional string. Name of the backbone's last layer
                (also a layer of a nested model, or a nested model's name for
                its output). Defaults to `None`: the layer with the last
                spatial output.
            merge: Optional list of lists of consecutive block names as found
                without `merge`/`split` (`"B1"`, `"B2"`, ...), each joined into
                one block. Defaults to `None`.
            split: Optional list of layer names, each starting a new block with
                the later layers of its block. Defaults to `None`.
            exclude: Optional list of layer names (or nested models) whose
                weights go to the head, never rolled back. Defaults to `None`.
            block_names: Optional list naming the final blocks. Defaults to
                `None`: `"B1"`, `"B2"`, ...
            head_name: String. Name of the head group. Defaults to `"head"`.

        Returns:
            A `BlockPartition`.

        Raises:
            NoResolutionBlocksError: (a `ValueError`) the model keeps one
                resolution throughout (a vision transformer, a CNN without
                strides) and neither `merge` nor `split` is given.
        """
        found = ResolutionBlocks.find(
            model,
            feature_layer=feature_layer,
            exclude=exclude,
            merge=merge,
            split=split,
            block_names=block_names,
        )
        if len(found.names) == 1 and not merge and not split:
            raise NoResolutionBlocksError(
                f"Model {model.name!r} keeps one resolution "
                f"({format_resolution(found.resolutions[0])}) up to feature layer "
                f"{found.feature_layer!r}, so by_resolution finds a single block: nothing "
                "could be rolled back. A vision transformer (keras-hub ViTBackbone, "
                "DeiTBackbone, DINOV2Backbone) has no resolution drops: use the registry, "
                "BlockPartition.for_model(model) (stem, then groups of transformer layers, "
                "`layer_groups=`), or explicit rules: BlockPartition(model, blocks={...}, "
                "head=[...]). For a CNN, `split=[layer names]` cuts the one resolution into "
                "blocks."
            )
        if head_name in found.names:
            raise ValueError(
                f"Block name {head_name!r} is reserved for the head. Received: block_names={list(found.names)}"
            )
        blocks = {name: _layer_rules(layers) for name, layers in zip(found.names, found.layers)}
        in_blocks = {w.path for layers in found.layers for layer in layers for w in layer.weights}
        head_paths = [w.path for w in model.weights if w.path not in in_blocks]
        if not head_paths:
            raise ValueError(
                f"Model {model.name!r} has no weights after feature layer {found.feature_layer!r}: a "
                "rolling-back model needs a new head (classifier) that is never rolled back."
            )
        return cls(model, blocks=blocks, head=_path_rules(head_paths), head_name=head_name)

    def _check_group(self, group):
        if group not in self.rules:
            raise ValueError(f"Unknown group {group!r}. Expected one of {list(self.group_names)}.")


def _as_rules(group, rules):
    if isinstance(rules, str):
        rules = [rules]
    if not isinstance(rules, Sequence) or not rules or not all(isinstance(r, str) for r in rules):
        raise ValueError(
            f"Rules of group {group!r} must be a string or a non-empty list of "
            f"strings. Received: {rules!r}"
        )
    for rule in rules:
        try:
            re.compile(rule)
        except re.error as e:
            raise ValueError(
                f"Rule {rule!r} of group {group!r} is not a valid regular expression: {e}"
            ) from None
    return tuple(rules)


def _assign(model, rules):
    """Maps each weight path to its one group; raises on gaps, overlaps, dead rules."""
    weights = model.weights
    if not weights:
        raise ValueError(f"Model {model.name!r} has no weights: build it before partitioning.")
    paths = [w.path for w in weights]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ValueError(
            f"Model {model.name!r} has several weights with the same path {duplicates[:5]}; "
            "give its layers unique names."
        )
    used = {(g, r): False for g, rs in rules.items() for r in rs}
    # Compiled once: generated partitions have more rules than `re`'s pattern cache.
    compiled = {g: [(r, re.compile(r)) for r in rs] for g, rs in rules.items()}
    group_of_path = {}
    unmatched = []
    for path in paths:
        groups = []
        for group, group_rules in compiled.items():
            hits = [r for r, pattern in group_rules if pattern.match(path)]
            for r in hits:
                used[(group, r)] = True
            if hits:
                groups.append(group)
        if len(groups) > 1:
            raise ValueError(
                f"Variable {path!r} of model {model.name!r} is matched by the rules of "
                f"several groups: {groups}. Each variable must belong to exactly one group."
            )
        if not groups:
            unmatched.append(path)
        else:
            group_of_path[path] = groups[0]
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} variable(s) of model {model.name!r} match no rule: "
            f"{unmatched[:10]}{' ...' if len(unmatched) > 10 else ''}. Add them to a "
            "block or to the head."
        )
    dead = [f"{r!r} (group {g!r})" for (g, r), hit in used.items() if not hit]
    if dead:
        raise ValueError(
            f"Rule(s) matching no variable of model {model.name!r} (unknown layer "
            f"names?): {', '.join(dead)}."
        )
    shapes = {w.path: (tuple(w.shape), w.trainable) for w in weights}
    return paths, shapes, group_of_path


def _layer_groups(layer, group_of_path):
    """`(name, group)` of `layer`, or of its sub-layers (by variable path) where it spans groups."""
    paths = [w.path for w in layer.weights if w.path in group_of_path]
    if not paths:
        return []
    if len({group_of_path[p] for p in paths}) == 1:
        return [(layer.name, group_of_path[paths[0]])]
    # The directory one level below the layer's own (`vit_encoder/transformer_block_1`).
    split = [p.split("/") for p in paths]
    common = next(
        (i for i, parts in enumerate(zip(*split)) if len(set(parts)) > 1),
        min(len(parts) for parts in split),
    )
    depth = common + 1
    rows: dict[str, str] = {}
    for path in paths:
        parts = path.split("/")
        rows.setdefault("/".join(parts[: min(depth, len(parts) - 1)] or parts), group_of_path[path])
    return list(rows.items())


def _layer_rules(layers):
    return _path_rules([w.path for layer in layers for w in layer.weights])


def _path_rules(paths):
    """Rules matching exactly `paths`: one per layer directory (`conv1_conv/`), else the path."""
    directories = _ordered_unique(p.rsplit("/", 1)[0] for p in paths if "/" in p)
    return [re.escape(d) + "/" for d in directories] + [
        re.escape(p) + "$" for p in paths if "/" not in p
    ]


def _ordered_unique(items):
    return list(dict.fromkeys(items))


def _deprecated(method, replacement):
    warnings.warn(
        f"`BlockPartition.{method}` is deprecated: use "
        f"`keras_rollback.partition_report.{replacement}(partition, ...)`.",
        DeprecationWarning,
        stacklevel=3,
    )
