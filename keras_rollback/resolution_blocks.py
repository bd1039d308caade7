"""`ResolutionBlocks`: a CNN's layers grouped into blocks by the resolution of their feature maps."""

import collections
import dataclasses
import difflib

import keras

from keras_rollback import compat

# Feature maps whose sides differ by less than this factor have the same resolution: a valid
# 3x3 convolution (149 -> 147) does not start a block, a stride-2 layer (7 -> 4, 3 -> 2) does.
SAME_RESOLUTION_RATIO = 1.5


@dataclasses.dataclass(frozen=True)
class ResolutionBlocks:
    """The blocks of a CNN backbone by feature-map resolution, and the layers after it.

    Ro et al. (AAAI 2019) partition the feature extractor into "blocks where
    each block contains several convolutional layers of the same
    resolution". `ResolutionBlocks.find(model)` does that on the model's
    graph: it follows the functional graph (into nested functional and
    Sequential models) from the input to the feature layer, gives every
    layer with weights the spatial resolution of its output, and starts a
    new block where that resolution drops. `BlockPartition.by_resolution`
    turns the result into a partition.

    Resolution rules:

    * The resolution of a layer is the largest spatial size its output
      reaches before the feature layer, counting layers with weights and
      merge layers (`Add`, `Multiply`, `Concatenate`). So a residual add
      belongs to the block of its output, the 1x1 convolutions of a
      squeeze-and-excitation branch (pooled to 1x1, then broadcast back by a
      `Multiply`) belong to the block they rescale, and padding layers are
      ignored. Networks that upsample inside the backbone are not supported.
    * Sizes within a factor `SAME_RESOLUTION_RATIO` (1.5) per side of the
      block's largest size are one resolution, so valid-padded convolutions
      that trim a border do not start a block.
    * A resolution whose layers have no trainable weights (a `Normalization`
      preprocessing layer at the input resolution) joins the next block.
    * Layers with weights between the last feature map and the feature
      layer (a `Dense` embedding named as the feature layer) join the last
      block.
    * Layers with weights that the walk from the input does not reach
      before the feature layer (the pooling and classifier after it, unused
      layers) are left to the head, as are excluded layers.
    * A layer called at several resolutions (a shared layer) belongs to the
      block of the highest one.

    Attributes:
        names: Block names, lowest (highest resolution) first.
        resolutions: For each block, the distinct spatial sizes (tuples) of
            its layers, largest first.
        layers: For each block, its layers with weights, in graph order.
        feature_layer: Name of the last layer of the backbone.
    """

    names: tuple
    resolutions: tuple
    layers: tuple
    feature_layer: str

    @classmethod
    def find(
        cls, model, feature_layer=None, exclude=None, merge=None, split=None, block_names=None
    ):
        """Finds the resolution blocks of `model`.

        Args:
            model: A built functional or Sequential `keras.Model`; models nested
                in it are followed when they are functional or Sequential.
            feature_layer: Optional string. Name of the last backbone layer (a
                layer of `model` or of a model nested in it, or the name of a
                nested model for its output). Defaults to `None`: the one layer
                with a spatial output that no later spatial output depends on.
            exclude: Optional list of layer names (nested models included)
                whose weights go to the head instead of a block.
            merge: Optional list of lists of consecutive block names, as found
                without `merge` and `split` (`"B1"`, `"B2"`, ...); each list
                becomes one block.
            split: Optional list of layer names; each starts a new block made
                of itself and the later layers of its block (graph order).
            block_names: Optional list of names for the final blocks. Defaults
                to `None`: `"B1"`, `"B2"`, ...

        Returns:
            A `ResolutionBlocks`.
        """
        if not isinstance(model, keras.Model):
            raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
        graph = _LayerGraph(model)
        if graph.graph is None:
            raise ValueError(
                f"Model {model.name!r} ({type(model).__name__}) has no functional graph to "
                "follow: build it as a functional or Sequential model (subclassed layers "
                "inside it are fine and stay whole)."
            )
        exclude = _check_names("exclude", exclude, graph, model)
        feature_nodes = graph.feature_nodes(model, feature_layer)
        backbone = graph.ancestors(feature_nodes)
        resolution = graph.effective_resolutions(backbone)
        excluded = {
            id(layer) for name in exclude for layer in graph.layers_named(name, nested=True)
        }
        layer_resolution: dict[int, tuple] = {}  # id(layer) -> (layer, largest size)
        after_feature_maps = []  # in the backbone, after its last feature map
        for index in sorted(backbone):
            layer = graph.nodes[index].layer
            if not _weights(layer) or id(layer) in excluded:
                continue
            if resolution[index] is None:
                after_feature_maps.append(layer)
                continue
            current = layer_resolution.get(id(layer), (layer, None))[1]
            if current is None or _area(resolution[index]) > _area(current):
                layer_resolution[id(layer)] = (layer, resolution[index])
        if not layer_resolution:
            raise ValueError(
                f"Model {model.name!r} has no layer with weights and a spatial output before "
                f"feature layer {graph.nodes[feature_nodes[0]].layer.name!r}: resolution "
                "blocks need convolutional feature maps. Use explicit rules: "
                "BlockPartition(model, blocks={...}, head=[...])."
            )
        levels = _group_sizes({size for _, size in layer_resolution.values()})
        level_of = {size: i for i, level in enumerate(levels) for size in level}
        members: list[list] = [[] for _ in levels]
        for layer, size in layer_resolution.values():
            members[level_of[size]].append(layer)
        members[-1] += [
            layer for layer in _unique(after_feature_maps) if id(layer) not in layer_resolution
        ]
        levels, members = _merge_untrainable_levels(levels, members)
        order: dict[int, int] = {}
        for position, node in enumerate(graph.nodes):
            order.setdefault(id(node.layer), position)
        names = [f"B{i}" for i in range(1, len(levels) + 1)]
        levels, members, names = _apply_merge(merge, levels, members, names)
        size_of = {id(layer): size for layer, size in layer_resolution.values()}
        levels, members = _apply_split(split, levels, members, size_of, order, graph, model)
        if block_names is None:
            block_names = [f"B{i}" for i in range(1, len(levels) + 1)]
        elif (
            isinstance(block_names, str)
            or len(block_names) != len(levels)
            or len(set(block_names)) != len(block_names)
        ):
            described = ", ".join(f"{format_resolution(s)}" for s in levels)
            raise ValueError(
                f"`block_names` must name the {len(levels)} blocks found ({described}) with "
                f"distinct names. Received: block_names={block_names!r}"
            )
        return cls(
            names=tuple(block_names),
            resolutions=tuple(tuple(level) for level in levels),
            layers=tuple(
                tuple(sorted(layers, key=lambda layer: order[id(layer)])) for layers in members
            ),
            feature_layer=graph.nodes[feature_nodes[0]].layer.name,
        )


def layer_resolutions(model):
    """Layers with weights in graph order, each with its resolution (None outside feature maps).

    The resolution follows `ResolutionBlocks`' rule over the whole graph; a
    model without a functional graph gives an empty list.
    """
    graph = _LayerGraph(model)
    if graph.graph is None:
        return []
    resolution = graph.effective_resolutions(set(range(len(graph.nodes))))
    rows: dict = {}
    for index, node in enumerate(graph.nodes):
        if _weights(node.layer):
            size = resolution[index]
            _, current = rows.get(id(node.layer), (node.layer, None))
            if current is None or (size is not None and _area(size) > _area(current)):
                rows[id(node.layer)] = (node.layer, size)
    return list(rows.values())


@dataclasses.dataclass(frozen=True)
class _Node:
    layer: object
    inputs: tuple  # ids of the walk's tensors
    outputs: tuple
    resolution: tuple | None  # largest spatial size among the outputs


class _LayerGraph:
    """A model's layer calls in topological order, nested functional models flattened.

    Shapes are propagated from the outermost inputs, so a backbone built with
    `input_shape=(None, None, 3)` and called on 64x32 images gets 64x32-based
    sizes.
    """

    def __init__(self, model):
        self.nodes = []
        self.producer = {}
        self.consumers = collections.defaultdict(list)
        self.calls = collections.defaultdict(list)  # layer name -> output tensor ids per call
        self._tensors = []  # keeps the walk's tensors alive, so their ids stay unique
        self.graph = compat.functional_graph(model)
        if self.graph is not None:
            self._run(self.graph, [self._tensor(t.shape, t.dtype) for t in self.graph.inputs])

    def _tensor(self, shape, dtype):
        tensor = keras.KerasTensor(shape, dtype=dtype)
        self._tensors.append(tensor)
        return tensor

    def _run(self, graph, inputs):
        values = {id(ref): tensor for ref, tensor in zip(graph.inputs, inputs)}
        for depth in sorted(compat.nodes_by_depth(graph), reverse=True):
            for node in compat.nodes_by_depth(graph)[depth]:
                if node.is_input or node.operation is None:
                    continue
                if any(id(t) not in values for t in node.input_tensors):
                    continue  # Not computable from the inputs.
                args = [values[id(t)] for t in node.input_tensors]
                inner = compat.functional_graph(node.operation)
                if inner is not None and len(inner.inputs) == len(args):
                    outputs = self._run(inner, args)
                else:
                    outputs = self._output_tensors(node, values)
                    self._add(node.operation, args, outputs)
                self.calls[node.operation.name].append(tuple(id(t) for t in outputs))
                for ref, tensor in zip(node.outputs, outputs):
                    values[id(ref)] = tensor
        return [values[id(t)] for t in graph.outputs]

    def _output_tensors(self, node, values):
        if all(values[id(t)].shape == t.shape for t in node.input_tensors):
            recorded = node.outputs
        else:
            args, kwargs = compat.fill_in_arguments(node, values)
            recorded = keras.tree.flatten(node.operation.compute_output_spec(*args, **kwargs))
        return [self._tensor(t.shape, t.dtype) for t in recorded]

    def _add(self, layer, inputs, outputs):
        index = len(self.nodes)
        sizes = [s for s in map(_spatial_size, outputs) if s is not None]
        self.nodes.append(
            _Node(
                layer=layer,
                inputs=tuple(id(t) for t in inputs),
                outputs=tuple(id(t) for t in outputs),
                resolution=max(sizes, key=_area) if sizes else None,
            )
        )
        for tensor in inputs:
            self.consumers[id(tensor)].append(index)
        for tensor in outputs:
            self.producer[id(tensor)] = index

    def layers_named(self, name, nested=False):
        """Layers called `name` in the graph; with `nested`, also the layers of a nested model `name`."""
        found = [node.layer for node in self.nodes if node.layer.name == name]
        if nested:
            for model in all_layers(self.graph):
                if model.name == name and _is_graph_model(model):
                    found.extend(all_layers(model))
        return _unique(found)

    def feature_nodes(self, model, feature_layer):
        """Indices of the nodes that produce the feature layer's output."""
        if feature_layer is None:
            spatial = [i for i, node in enumerate(self.nodes) if node.resolution is not None]
            if not spatial:
                raise ValueError(
                    f"Model {model.name!r} has no layer with a spatial output (a feature map "
                    "with height and width): resolution blocks need a convolutional backbone."
                )
            feeds_spatial = set()  # nodes with a spatial output downstream
            for index in reversed(range(len(self.nodes))):
                for tensor in self.nodes[index].outputs:
                    for consumer in self.consumers[tensor]:
                        if self.nodes[consumer].resolution is not None or consumer in feeds_spatial:
                            feeds_spatial.add(index)
            last = [i for i in spatial if i not in feeds_spatial]
            if len(last) > 1:
                names = sorted({self.nodes[i].layer.name for i in last})
                raise ValueError(
                    f"Model {model.name!r} has several last feature maps {names}: name the "
                    "backbone's last layer with `feature_layer=`."
                )
            return last
        if not isinstance(feature_layer, str):
            raise ValueError(
                f"`feature_layer` must be a layer name. Received: feature_layer={feature_layer!r}"
            )
        calls = self.calls.get(feature_layer)
        if not calls:
            raise ValueError(
                f"feature_layer={feature_layer!r} is not a layer of model {model.name!r} reached "
                f"from its inputs{_did_you_mean(feature_layer, self.calls)}."
            )
        # The last call: the deepest use of a shared layer.
        return list(dict.fromkeys(self.producer[t] for t in calls[-1] if t in self.producer))

    def ancestors(self, indices):
        """The given nodes and every node they depend on."""
        seen = set()
        stack = list(indices)
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            stack.extend(self.producer[t] for t in self.nodes[index].inputs if t in self.producer)
        return seen

    def effective_resolutions(self, within):
        """Per node index in `within`: the largest resolution reached downstream inside `within`."""
        resolution: dict[int, tuple | None] = {}
        for index in sorted(within, reverse=True):
            node = self.nodes[index]
            counts = bool(_weights(node.layer)) or len(node.inputs) > 1
            candidates = [node.resolution] if counts and node.resolution is not None else []
            for tensor in node.outputs:
                candidates.extend(
                    resolution[c]
                    for c in self.consumers[tensor]
                    if c in within and resolution[c] is not None
                )
            resolution[index] = max(candidates, key=_area) if candidates else None
        return resolution


def _weights(operation):
    """A layer's weights; none for a `keras.ops` operation in the graph."""
    return getattr(operation, "weights", ())


def _is_graph_model(layer):
    return compat.functional_graph(layer) is not None


def all_layers(model):
    """Layers of `model` and of the models nested in it, depth first, in order."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def _spatial_size(tensor):
    shape = tuple(tensor.shape)
    if len(shape) < 3 or 0 in shape:
        # An empty tensor (keras-hub's DeiT encoder returns its unused attention scores as
        # `(0, heads, tokens, tokens)`) holds no feature map.
        return None
    spatial = shape[1:-1] if keras.config.image_data_format() == "channels_last" else shape[2:]
    return None if None in spatial else spatial


def _area(size):
    area = 1
    for side in size:
        area *= side
    return area


def _group_sizes(sizes):
    """Distinct sizes, largest first, grouped into resolutions (lists, largest first)."""
    levels: list[list] = []
    for size in sorted(sizes, key=_area, reverse=True):
        anchor = levels[-1][0] if levels else None
        if anchor is not None and all(
            s > 0 and a / s < SAME_RESOLUTION_RATIO for a, s in zip(anchor, size)
        ):
            levels[-1].append(size)
        else:
            levels.append([size])
    return levels


def _merge_untrainable_levels(levels, members):
    kept_levels, kept_members, pending_levels, pending_members = [], [], [], []
    for level, layers in zip(levels, members):
        pending_levels += level
        pending_members += layers
        if any(layer.trainable_weights for layer in layers):
            kept_levels.append(pending_levels)
            kept_members.append(pending_members)
            pending_levels, pending_members = [], []
    if pending_members:
        if not kept_members:
            return [pending_levels], [pending_members]
        kept_levels[-1] += pending_levels
        kept_members[-1] += pending_members
    return kept_levels, kept_members


def _apply_merge(merge, levels, members, names):
    if merge is None:
        return levels, members, names
    if isinstance(merge, str) or not all(not isinstance(g, str) and len(g) >= 2 for g in merge):
        raise ValueError(
            "`merge` must be a list of lists of two or more consecutive block names. "
            f"Received: merge={merge!r}"
        )
    merged_into = {}
    for group in merge:
        unknown = [n for n in group if n not in names]
        if unknown:
            raise ValueError(
                f"`merge` names unknown blocks {unknown}. The blocks found are {names}."
            )
        positions = [names.index(n) for n in group]
        if positions != list(range(positions[0], positions[0] + len(positions))):
            raise ValueError(
                f"`merge` can only join consecutive blocks, in order. Received: {list(group)} "
                f"(blocks found: {names})."
            )
        for position in positions:
            if position in merged_into:
                raise ValueError(
                    f"Block {names[position]!r} appears in several `merge` lists: {merge!r}."
                )
            merged_into[position] = positions[0]
    new_levels: list = []
    new_members: list = []
    new_names: list = []
    for position, (level, layers) in enumerate(zip(levels, members)):
        if merged_into.get(position, position) != position:
            new_levels[-1] = new_levels[-1] + level
            new_members[-1] = new_members[-1] + layers
        else:
            new_levels.append(list(level))
            new_members.append(list(layers))
            new_names.append(names[position])
    return new_levels, new_members, new_names


def _apply_split(split, levels, members, size_of, order, graph, model):
    if split is None:
        return levels, members
    if isinstance(split, str) or not all(isinstance(s, str) for s in split):
        raise ValueError(f"`split` must be a list of layer names. Received: split={split!r}")
    for name in split:
        block = next(
            (b for b, layers in enumerate(members) if any(layer.name == name for layer in layers)),
            None,
        )
        if block is None:
            where = (
                "a layer of the model"
                if not graph.layers_named(name)
                else "a layer with weights in a block"
            )
            raise ValueError(
                f"split={name!r} is not {where} of model {model.name!r}"
                f"{_did_you_mean(name, graph.calls)}."
            )
        layers = sorted(members[block], key=lambda layer: order[id(layer)])
        start = next(i for i, layer in enumerate(layers) if layer.name == name)
        if start == 0:
            raise ValueError(f"split={name!r} already starts a block: nothing to split.")
        members[block : block + 1] = [layers[:start], layers[start:]]
        levels[block : block + 1] = [
            sorted({size_of[id(layer)] for layer in part}, key=_area, reverse=True)
            for part in (layers[:start], layers[start:])
        ]
    return levels, members


def _check_names(argument, names, graph, model):
    if names is None:
        return []
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"`{argument}` must be a list of layer names. Received: {argument}={names!r}"
        )
    for name in names:
        if not graph.layers_named(name, nested=True):
            raise ValueError(
                f"{argument}={name!r}: model {model.name!r} has no layer {name!r}"
                f"{_did_you_mean(name, graph.calls)}."
            )
    return list(names)


def _did_you_mean(name, known):
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def format_resolution(sizes):
    """`"16x16"`, or `"37x37-15x15"` for several sizes (largest first); `""` for none."""
    text = ["x".join(str(side) for side in size) for size in sizes]
    return "" if not text else text[0] if len(text) == 1 else f"{text[0]}-{text[-1]}"


def _unique(items):
    """Distinct objects (layers are compared by identity), in order."""
    seen, result = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            result.append(item)
    return result
