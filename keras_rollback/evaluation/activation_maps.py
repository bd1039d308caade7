"""Activation maps of a model's last feature block, and the share of them on the person.

The paper's Figure 6 (Ro et al., AAAI 2019) shows where the last convolutional layer of a
fine-tuned and of a rolled-back ResNet responds on query images. `activation_maps` computes
that map for any Keras CNN (the mean over channels of the absolute activation, upsampled
over the image); `foreground_share` turns a map and a person mask into one number, the
fraction of the map that falls on the person, which the paper only showed as pictures.
"""

import difflib
import itertools

import keras
import numpy as np

from keras_rollback import compat
from keras_rollback.models import backbone_registry
from keras_rollback.models.transformer_blocks import find_transformer_backbone
from keras_rollback.resolution_blocks import ResolutionBlocks
from keras_rollback.resolution_blocks import all_layers


def activation_maps(model, images, *, layer=None, batch_size=32):
    """Activation maps of the last feature block of `model` on `images`.

    Parameters
    ----------
    model : keras.Model
        A functional or Sequential model (backbones nested in it are followed), e.g. a
        `build_reid_model` model or one loaded from an experiment's ``model.keras``.
    images : array-like of shape (n_images, height, width, channels)
        The model's inputs, normalised as the model expects (the evaluation pipeline's
        images, ``ImageTransform.eval_transform``).
    layer : str or None, default=None
        Name of the layer whose output is mapped (a layer of `model` or of a model nested
        in it). ``None``: the output of the backbone's last block, the feature map that
        `BlockPartition` ends the last block at: the registered family's feature layer
        (`BackboneSpec.feature_layer`) or else the last layer with a spatial output
        (`ResolutionBlocks`); for a ResNet, the last residual block's output.
    batch_size : int, default=32
        Images per forward pass.

    Returns
    -------
    maps : ndarray of shape (n_images, height, width), float32
        Non-negative; not normalised (compare maps of one model, or use
        `foreground_share`, which is scale-free).

    Raises
    ------
    ValueError
        If `images` is not a 4-D array, `layer` names no layer of the model (the message
        names it and the closest names), the layer's output is not a 4-D feature map, or
        the model is a vision transformer and no `layer` is given.

    Notes
    -----
    The map of an image is ``mean_c |A[y, x, c]|`` over the channels `c` of the layer's
    output `A` (of shape ``(h, w, channels)``, or channels first under that data format),
    computed in inference mode (BatchNorm moving statistics, no dropout), then enlarged to
    ``(height, width)`` by bilinear interpolation with half-pixel centres, edges clamped
    (``align_corners=False``: the convention of PIL's and ``tf.image.resize``'s bilinear
    enlargement). For a ResNet the last block's output is ReLU'd, so the absolute value
    changes nothing there.

    Examples
    --------
    >>> maps = activation_maps(model, batch["image"])  # doctest: +SKIP
    >>> maps.shape  # doctest: +SKIP
    (8, 288, 144)
    """
    images = np.asarray(images)
    coarse = coarse_activation_maps(model, images, layer=layer, batch_size=batch_size)
    if keras.config.image_data_format() == "channels_last":
        size = images.shape[1:3]
    else:
        size = images.shape[2:4]
    return resize_bilinear(coarse, size).astype(np.float32)


def coarse_activation_maps(model, images, *, layer=None, batch_size=32):
    """The maps of `activation_maps` before upsampling: at the layer's own resolution.

    Parameters
    ----------
    model, images, layer, batch_size
        As for `activation_maps`.

    Returns
    -------
    maps : ndarray of shape (n_images, h, w), float32
        ``mean_c |A[y, x, c]|`` of the layer's output `A`; `h` and `w` are its spatial
        size (for a ResNet, the image's size / 32 with the default stride).
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            "`images` must be a 4-D array (n_images, height, width, channels). Received "
            f"shape {images.shape}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Received: batch_size={batch_size!r}. Expected a positive integer.")
    if layer is None:
        layer = last_feature_layer(model)
    channels_axis = -1 if keras.config.image_data_format() == "channels_last" else 1
    features = _layer_output_function(model, layer)
    maps = []
    for start in range(0, len(images), batch_size):
        output = features(images[start : start + batch_size])
        if output.ndim != 4:
            raise ValueError(
                f"Layer {layer!r} of model {model.name!r} outputs shape {output.shape}: an "
                "activation map needs a 4-D feature map (batch, height, width, channels). "
                "Name a convolutional layer with `layer=`."
            )
        maps.append(np.abs(output).mean(axis=channels_axis).astype(np.float32))
    if not maps:
        raise ValueError("`images` holds no image.")
    return np.concatenate(maps)


def last_feature_layer(model):
    """Name of the layer that ends the backbone's last block in `model` (see
    `activation_maps`)."""
    class_name, _ = find_transformer_backbone(model)
    if class_name is not None:
        raise ValueError(
            f"Model {model.name!r} holds a {class_name}: its last block outputs tokens, not a "
            "feature map, so it has no activation map by default. Name a layer with a 4-D "
            "output with `layer=`."
        )
    spec, _ = backbone_registry.find_backbone(model)
    feature_layer = spec.feature_layer if spec is not None else None
    return ResolutionBlocks.find(model, feature_layer=feature_layer).feature_layer


def foreground_share(maps, masks):
    """Share of each activation map that falls inside the person's mask.

    Parameters
    ----------
    maps : array-like of shape (n_images, height, width)
        Non-negative maps, e.g. from `activation_maps`.
    masks : array-like of bool of shape (n_images, height, width)
        True on the person (foreground).

    Returns
    -------
    shares : ndarray of shape (n_images,), float64
        ``sum(map[mask]) / sum(map)`` per image, in [0, 1]; NaN for an all-zero map.

    Raises
    ------
    ValueError
        If the shapes differ or are not 3-D, a map has a negative or non-finite value, or a
        mask is not boolean.

    Notes
    -----
    The share does not depend on the map's scale. A map spread evenly over the image
    scores the mask's area fraction (``masks.mean()``), so compare a share with that
    fraction, or two models on the same images and masks.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(
            "`maps` and `masks` must both have shape (n_images, height, width). Received "
            f"shapes {maps.shape} and {masks.shape}."
        )
    if masks.dtype != bool:
        raise ValueError(f"`masks` must be boolean. Received dtype {masks.dtype}.")
    if not np.all(np.isfinite(maps)) or (maps.size and maps.min() < 0):
        raise ValueError("`maps` must be finite and non-negative.")
    total = maps.sum(axis=(1, 2))
    inside = np.where(masks, maps, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def resize_bilinear(maps, size):
    """Resizes `(n, h, w)` maps to `(n, *size)`: bilinear, half-pixel centres, edges clamped."""
    maps = np.asarray(maps, dtype=np.float64)
    rows = _interpolation_matrix(maps.shape[1], size[0])
    cols = _interpolation_matrix(maps.shape[2], size[1])
    return np.einsum("yh,nhw,xw->nyx", rows, maps, cols)


def _interpolation_matrix(source, target):
    """`(target, source)` weights of 1-D linear interpolation with half-pixel centres."""
    position = (np.arange(target) + 0.5) * source / target - 0.5
    position = np.clip(position, 0, source - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, source - 1)
    fraction = position - low
    weights = np.zeros((target, source))
    weights[np.arange(target), low] += 1 - fraction
    weights[np.arange(target), high] += fraction
    return weights


def _layer_output_function(model, name):
    """A function from a batch of `model`'s inputs to layer `name`'s output (numpy)."""
    path = _path_to_layer(model, name)
    if path is None:
        names = [layer.name for layer in all_layers(model)]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Layer {name!r} is not a layer of model {model.name!r} or of a model nested in "
            f"it.{hint}"
        )
    # path = [model, nested model, ..., layer]. Each step maps a container's input to the
    # input of the model nested in it (skipped where it is the same tensor); the last one
    # maps the innermost container's input to the layer's output.
    steps = []
    for container, inner in itertools.pairwise(path):
        graph = compat.functional_graph(container)
        if graph is None:
            raise ValueError(
                f"Cannot reach layer {name!r}: {container.name!r} is not a functional or "
                "Sequential model."
            )
        node = _last_call(graph, inner)
        if inner is path[-1]:
            target = list(node.output_tensors)
        else:
            target = list(node.input_tensors)
            if len(target) == 1 and any(target[0] is t for t in graph.inputs):
                continue
        inputs = graph.inputs[0] if len(graph.inputs) == 1 else graph.inputs
        steps.append(keras.Model(inputs, target[0] if len(target) == 1 else target))

    def run(batch):
        values = batch
        for step in steps:
            values = step(values, training=False)
        return np.asarray(keras.ops.convert_to_numpy(values))

    return run


def _last_call(graph, layer):
    """The node of `graph` that calls `layer` (its last call, for a shared layer)."""
    nodes = [
        node
        for depth in sorted(compat.nodes_by_depth(graph), reverse=True)
        for node in compat.nodes_by_depth(graph)[depth]
        if node.operation is layer
    ]
    if not nodes:
        raise ValueError(f"Layer {layer.name!r} is not called in model {graph.name!r}.")
    return nodes[-1]


def _path_to_layer(model, name):
    """`[model, nested models..., layer]` down to the layer called `name`, or None."""
    for layer in getattr(model, "layers", ()):
        if layer.name == name:
            return [model, layer]
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.Model):
            inner = _path_to_layer(layer, name)
            if inner is not None:
                return [model, *inner]
    return None
