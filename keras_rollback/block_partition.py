"""`BlockPartition`: which backbone block (or the head) each model variable belongs to."""

import re
from collections.abc import Mapping, Sequence

import keras
import numpy as np

HEAD = "head"


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
    InceptionV3, keras-hub `ResNetBackbone`), and puts every weight outside the
    backbone into the head.

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
    partition.summary()
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

    def table(self):
        """Per-group statistics: a list of dicts.

        Keys: `group`, `layers` (layers owning weights), `conv_layers` (layers
        with a 4-D kernel), `trainable_params`, `non_trainable_params`.
        """
        rows = []
        for group in self.group_names:
            paths = self.paths(group)
            layers = {p.rsplit("/", 1)[0] for p in paths}
            conv_layers = {
                p.rsplit("/", 1)[0]
                for p in paths
                if p.endswith("kernel") and len(self._shapes[p][0]) == 4
            }
            sizes = [(int(np.prod(self._shapes[p][0])), self._shapes[p][1]) for p in paths]
            trainable = sum(size for size, is_trainable in sizes if is_trainable)
            frozen = sum(size for size, is_trainable in sizes if not is_trainable)
            rows.append(
                {
                    "group": group,
                    "layers": len(layers),
                    "conv_layers": len(conv_layers),
                    "trainable_params": trainable,
                    "non_trainable_params": frozen,
                }
            )
        return rows

    def summary(self, print_fn=None):
        """Prints one line per block and the head: layers, conv layers, parameters.

        Args:
            print_fn: Callable taking one string. Defaults to `print`.
        """
        print_fn = print_fn or print
        header = f"{'group':<12}{'layers':>8}{'conv':>6}{'trainable':>14}{'non-trainable':>15}"
        lines = [f'BlockPartition of model "{self.model_name}"', header, "-" * len(header)]
        for row in self.table():
            lines.append(
                f"{row['group']:<12}{row['layers']:>8}{row['conv_layers']:>6}"
                f"{row['trainable_params']:>14,}{row['non_trainable_params']:>15,}"
            )
        print_fn("\n".join(lines))

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
    def for_model(cls, model):
        """The preset partition of a known backbone; other weights form the head.

        Recognised backbones (searched through nested models):
        keras.applications ResNet50/101/152 (stem = `conv1`, then
        `conv2_x`..`conv5_x`), ResNet50V2/101V2/152V2 (the same, `post_bn` in
        `conv5_x`), keras-hub `ResNetBackbone` v1 (stem, then `stack0`..`stack3`
        named `conv2_x`..`conv5_x`), and keras.applications InceptionV3 (`B1` =
        stem up to the second max-pooling, `B2` = mixed0-2, `B3` = mixed3-7,
        `B4` = mixed8-10, the paper's Table 7). InceptionV3 layer names are
        generated and change between builds, so its blocks are found by layer
        position between the `mixedN` layers and then written as exact
        layer-name rules for this model.

        Args:
            model: `keras.Model` containing one of the backbones above.

        Returns:
            A `BlockPartition`.
        """
        paths = [w.path for w in model.weights]
        for detect in (_resnet_rules, _keras_hub_resnet_rules, _inception_v3_rules):
            blocks = detect(model, paths)
            if blocks is not None:
                break
        else:
            raise ValueError(
                f"No preset partition for model {model.name!r}: it contains no "
                "keras.applications ResNet/ResNetV2/InceptionV3 or keras-hub "
                "ResNetBackbone. Build one with explicit rules: "
                "BlockPartition(model, blocks={...}, head=[...])."
            )
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

    def _check_group(self, group):
        if group not in self.rules:
            raise ValueError(
                f"Unknown group {group!r}. Expected one of {list(self.group_names)}."
            )


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
            raise ValueError(f"Rule {rule!r} of group {group!r} is not a valid regular expression: {e}") from None
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
    group_of_path = {}
    unmatched = []
    for path in paths:
        groups = []
        for group, group_rules in rules.items():
            hits = [r for r in group_rules if re.match(r, path)]
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


def _ordered_unique(items):
    return list(dict.fromkeys(items))


def _all_layers(model):
    """Layers of `model` and of the models nested in it, depth first, in order."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


_RESNET_STAGES = ("conv2_x", "conv3_x", "conv4_x", "conv5_x")


def _resnet_rules(model, paths):
    # keras.applications ResNet v1 and v2 share names: conv1_conv, convK_blockJ_...;
    # v2 ends with a `post_bn` that acts on conv5's output.
    if not {"conv1_conv/kernel", "conv5_block1_1_conv/kernel"} <= set(paths):
        return None
    blocks = {"stem": ["conv1_"]}
    for k, stage in enumerate(_RESNET_STAGES, start=2):
        blocks[stage] = [f"conv{k}_"]
    if any(p.startswith("post_bn/") for p in paths):
        blocks["conv5_x"].append("post_bn/")
    return blocks


def _keras_hub_resnet_rules(model, paths):
    if not any(p.startswith("stack3_block0_") for p in paths):
        return None
    stem = _ordered_unique(
        p.rsplit("/", 1)[0] + "/" for p in paths if re.match(r"conv1(_\d+)?_(conv|bn)/", p)
    )
    if not stem:
        return None
    blocks = {"stem": [re.escape(s) for s in stem]}
    for k, stage in enumerate(_RESNET_STAGES):
        blocks[stage] = [f"stack{k}_"]
    return blocks


def _inception_v3_rules(model, paths):
    layers = list(_all_layers(model))
    names = [layer.name for layer in layers]
    if not {"mixed2", "mixed7", "mixed10"} <= set(names):
        return None
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.MaxPooling2D)]
    mixed0 = names.index("mixed0")
    stem_pools = [i for i in pools if i < mixed0]
    if len(stem_pools) != 2:
        return None
    ends = {"B1": stem_pools[1], "B2": names.index("mixed2"),
            "B3": names.index("mixed7"), "B4": names.index("mixed10")}
    backbone_start = names.index("mixed10") - 1
    while backbone_start >= 0 and not isinstance(layers[backbone_start], keras.layers.InputLayer):
        backbone_start -= 1
    blocks = {}
    start = backbone_start + 1
    for block, end in ends.items():
        rules = [re.escape(layer.name) + "/" for layer in layers[start : end + 1] if layer.weights]
        blocks[block] = rules
        start = end + 1
    return blocks
