"""Backbones of the paper: ResNet-18/34/50/101/152 and InceptionV3, with weights and preprocessing."""

import os

import keras

from keras_rollback.models.keras_weights import load_weights_strict
from keras_rollback.models.torchvision_weights import TORCH_CHECKPOINT_SUFFIXES
from keras_rollback.models.torchvision_weights import load_torchvision_weights

# torchvision's ResNet v1.5 configurations: block type and blocks per stage.
RESNET_CONFIGS = {
    "resnet18": ("basic_block", (2, 2, 2, 2)),
    "resnet34": ("basic_block", (3, 4, 6, 3)),
    "resnet50": ("bottleneck_block", (3, 4, 6, 3)),
    "resnet101": ("bottleneck_block", (3, 4, 23, 3)),
    "resnet152": ("bottleneck_block", (3, 8, 36, 3)),
}
RESNET_WIDTHS = (64, 128, 256, 512)
ARCHITECTURES = tuple(RESNET_CONFIGS) + ("inception_v3",)
SOURCES = ("keras_hub", "keras_applications")

_KERAS_APPLICATIONS = {
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet152": ("ResNet152", "caffe"),
    "inception_v3": ("InceptionV3", "tf"),
}
_KERAS_HUB_PRESETS = {
    "resnet18": "resnet_18_imagenet",
    "resnet50": "resnet_50_imagenet",
    "resnet101": "resnet_101_imagenet",
    "resnet152": "resnet_152_imagenet",
}


def resolve_source(arch, source=None):
    """The library that builds `arch`: `"keras_hub"` or `"keras_applications"`.

    ResNets default to `"keras_hub"`: its `ResNetBackbone` is torchvision's
    ResNet v1.5 layer for layer (stride on the 3x3 convolution of a
    bottleneck, symmetric zero padding before every strided convolution,
    BatchNorm epsilon 1e-5), so torchvision checkpoints, the weights of the
    paper, convert into it exactly. keras.applications' ResNet50/101/152 are
    the original Caffe ResNet v1 (stride on the first 1x1 convolution,
    convolution biases, epsilon 1.001e-5): same parameter count, different
    function, and only its own "imagenet" weights fit it. InceptionV3 exists
    only in keras.applications.

    Args:
        arch: String. One of `ARCHITECTURES`.
        source: String or None. `"keras_hub"`, `"keras_applications"`, or
            None for the default of `arch`. Defaults to `None`.

    Returns:
        The source name.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"Unknown backbone. Received: arch={arch!r}. Expected one of {list(ARCHITECTURES)}."
        )
    if source is None:
        return "keras_applications" if arch == "inception_v3" else "keras_hub"
    if source not in SOURCES:
        raise ValueError(
            f"Unknown backbone source. Received: source={source!r}. Expected one of {list(SOURCES)}."
        )
    if source == "keras_hub" and arch not in RESNET_CONFIGS:
        raise ValueError(
            f"keras-hub has no {arch}. Received: arch={arch!r}, source={source!r}; use source='keras_applications'."
        )
    if source == "keras_applications" and arch not in _KERAS_APPLICATIONS:
        raise ValueError(
            f"keras.applications has no {arch} (it has {sorted(_KERAS_APPLICATIONS)}). "
            f"Received: arch={arch!r}, source={source!r}; use source='keras_hub'."
        )
    return source


def backbone_preprocessing(arch, source=None):
    """The input normalisation that a backbone's pre-trained weights expect.

    Returns a mode of `keras_rollback.data.pipeline.normalize_images`:
    `"torch"` (scale to [0, 1], ImageNet mean/std; keras-hub ResNets and
    torchvision checkpoints), `"caffe"` (BGR minus the ImageNet mean pixel;
    keras.applications ResNets) or `"tf"` (scale to [-1, 1]; InceptionV3).

    Args:
        arch: String. One of `ARCHITECTURES`.
        source: String or None. See `resolve_source`. Defaults to `None`.

    Returns:
        `"torch"`, `"caffe"` or `"tf"`.
    """
    source = resolve_source(arch, source)
    return "torch" if source == "keras_hub" else _KERAS_APPLICATIONS[arch][1]


def build_backbone(
    arch="resnet50",
    *,
    weights=None,
    source=None,
    input_shape=(None, None, 3),
    last_stride=2,
    name=None,
):
    """Builds a convolutional backbone (no pooling, no classifier) and loads its weights.

    The ResNets of the paper (ResNet-34/50/101, and ResNet-18/152) are built
    by default as keras-hub `ResNetBackbone`s with torchvision's layout (see
    `resolve_source`), whose weight paths `BlockPartition.for_model` splits
    into `stem, conv2_x..conv5_x`; InceptionV3 comes from keras.applications
    (blocks `B1..B4`). The output is the last feature map: 512 channels for
    ResNet-18/34, 2048 for the others.

    Example:

    ```python
    backbone = build_backbone("resnet50", weights="resnet50-0676ba61.pth",
                              input_shape=(288, 144, 3))
    preprocessing = backbone_preprocessing("resnet50")  # "torch"
    ```

    Args:
        arch: String. One of `"resnet18"`, `"resnet34"`, `"resnet50"`,
            `"resnet101"`, `"resnet152"`, `"inception_v3"`. Defaults to
            `"resnet50"`.
        weights: None (random initialisation), `"imagenet"` (keras-hub preset
            or keras.applications weights; downloads them, and keras-hub has
            no ResNet-34 preset), a torchvision state_dict file (`.pth`, `.pt`,
            `.bin` or `.safetensors`; keras-hub source only, converted by
            `load_torchvision_weights`), or a Keras `.weights.h5` file of this
            backbone (loaded strictly by `load_weights_strict`). Defaults to
            `None`.
        source: String or None. `"keras_hub"` or `"keras_applications"`; None
            picks the default of `arch` (see `resolve_source`). Defaults to
            `None`.
        input_shape: Tuple. Input shape without the batch size, channels last
            (or first, following `keras.config.image_data_format()`).
            Defaults to `(None, None, 3)`.
        last_stride: 1 or 2. Stride of the last ResNet stage; 1 doubles the
            final feature map, a common ReID choice (the paper uses 2).
            keras-hub ResNets only. Defaults to `2`.
        name: String or None. Name of the backbone model. Defaults to
            `"<arch>_backbone"`.

    Returns:
        A `keras.Model` mapping images to the last feature map.
    """
    source = resolve_source(arch, source)
    if last_stride not in (1, 2) or isinstance(last_stride, bool):
        raise ValueError(f"`last_stride` must be 1 or 2. Received: last_stride={last_stride!r}")
    if last_stride != 2 and source != "keras_hub":
        raise ValueError(
            f"`last_stride` can only be changed for keras-hub ResNets. Received: arch={arch!r}, "
            f"source={source!r}, last_stride={last_stride}"
        )
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be a tuple of 3 dimensions. Received: input_shape={input_shape!r}"
        )
    input_shape = tuple(input_shape)
    name = name or f"{arch}_backbone"
    weight_file = _weight_file(weights, arch, source)
    if source == "keras_applications":
        constructor = getattr(keras.applications, _KERAS_APPLICATIONS[arch][0])
        model = constructor(
            include_top=False,
            weights="imagenet" if weights == "imagenet" else None,
            input_shape=input_shape,
            name=name,
        )
    elif weights == "imagenet":
        model = _keras_hub_imagenet(arch, input_shape, last_stride, name)
    else:
        model = keras_hub_resnet(arch, input_shape=input_shape, last_stride=last_stride, name=name)
    if weight_file is not None:
        if weight_file.endswith(".weights.h5"):
            load_weights_strict(model, weight_file)
        else:
            load_torchvision_weights(model, weight_file)
    return model


def keras_hub_resnet(
    arch,
    *,
    input_shape=(None, None, 3),
    last_stride=2,
    widths=RESNET_WIDTHS,
    blocks=None,
    name=None,
):
    """A randomly initialised keras-hub `ResNetBackbone` with torchvision's configuration.

    Args:
        arch: String. A ResNet of `RESNET_CONFIGS`; its block type is used,
            and its blocks per stage unless `blocks` is given.
        input_shape: Tuple. Input shape without the batch size. Defaults to
            `(None, None, 3)`.
        last_stride: 1 or 2. Stride of the last stage. Defaults to `2`.
        widths: Tuple of 4 integers. Base width of each stage (keras-hub
            requires 64 for the first); reduced widths give small test
            models. Defaults to `(64, 128, 256, 512)`.
        blocks: Tuple of 4 integers or None. Blocks per stage. Defaults to
            `None` (those of `arch`).
        name: String or None. Model name. Defaults to `"<arch>_backbone"`.

    Returns:
        A `keras_hub.models.ResNetBackbone`.
    """
    if arch not in RESNET_CONFIGS:
        raise ValueError(
            f"Unknown ResNet. Received: arch={arch!r}. Expected one of {list(RESNET_CONFIGS)}."
        )
    block_type, default_blocks = RESNET_CONFIGS[arch]
    blocks = default_blocks if blocks is None else tuple(blocks)
    for label, values in (("widths", widths), ("blocks", blocks)):
        if len(values) != 4 or not all(isinstance(v, int) and v > 0 for v in values):
            raise ValueError(f"`{label}` must be 4 positive integers. Received: {label}={values!r}")
    keras_hub = _import_keras_hub()
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(widths),
        stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1, 2, 2, last_stride],
        block_type=block_type,
        use_pre_activation=False,
        image_shape=input_shape,
        name=name or f"{arch}_backbone",
    )


def _keras_hub_imagenet(arch, input_shape, last_stride, name):
    preset = _KERAS_HUB_PRESETS.get(arch)
    if preset is None:
        raise ValueError(
            f"keras-hub has no ImageNet preset for {arch}. Received: arch={arch!r}, weights='imagenet'. "
            "Convert torchvision's checkpoint instead: `python -m keras_rollback.models.convert_torchvision "
            f"--arch {arch} --input {arch}.pth --output {arch}.weights.h5`, then pass weights='{arch}.weights.h5'."
        )
    keras_hub = _import_keras_hub()
    return keras_hub.models.ResNetBackbone.from_preset(
        preset,
        image_shape=input_shape,
        stackwise_num_strides=[1, 2, 2, last_stride],
        name=name,
    )


def _weight_file(weights, arch, source):
    """The weight file to load after building, or None; validates `weights`."""
    if weights is None or weights == "imagenet":
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"`weights` must be None, 'imagenet' or a file path. Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if path.endswith(".weights.h5"):
        pass
    elif path.endswith(TORCH_CHECKPOINT_SUFFIXES):
        if source != "keras_hub":
            raise ValueError(
                f"torchvision checkpoints convert only into keras-hub ResNets (torchvision's layout). "
                f"Received: weights={path!r}, arch={arch!r}, source={source!r}."
            )
    else:
        raise ValueError(
            f"Unknown weight file type. Received: weights={path!r}. Expected a Keras '.weights.h5' file or "
            f"a torchvision state_dict ({', '.join(TORCH_CHECKPOINT_SUFFIXES)})."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weight file not found. Received: weights={path!r}")
    return path


def _import_keras_hub():
    try:
        import keras_hub
    except ImportError as e:
        raise ImportError(
            "ResNet backbones with torchvision's layout need keras-hub (a dependency of keras-rollback): `pip install keras-hub`."
        ) from e
    return keras_hub
