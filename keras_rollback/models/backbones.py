"""Backbones of the paper: ResNet-18/34/50/101/152 and InceptionV3, with weights and preprocessing."""

import os

import keras
from absl import logging

from keras_rollback._atomic_files import sha256_of_file
from keras_rollback.models import backbone_registry
from keras_rollback.models import backbone_spec
from keras_rollback.models import weight_source
from keras_rollback.models.keras_weights import load_weights_strict
from keras_rollback.models.torchvision_weights import TORCH_CHECKPOINT_SUFFIXES
from keras_rollback.models.torchvision_weights import load_torchvision_weights
from keras_rollback.models.weight_file_errors import WeightFileError
from keras_rollback.models.weight_file_errors import WeightFileNotFoundError

SOURCES = backbone_spec.SOURCES


def __getattr__(name):
    # Read from the registry at each access, so families registered later are listed too.
    if name == "ARCHITECTURES":
        return backbone_registry.backbone_architectures()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_source(arch, source=None):
    """The library that builds `arch`: `"keras_hub"` or `"keras_applications"`.

    The first registered family of `arch` is its default (see
    `keras_rollback/models/backbone_presets.py`). ResNet-18..152 default to
    `"keras_hub"`: its `ResNetBackbone` is torchvision's ResNet v1.5 layer for
    layer (stride on the 3x3 convolution of a bottleneck, symmetric zero
    padding before every strided convolution, BatchNorm epsilon 1e-5), so
    torchvision checkpoints, the weights of the paper, convert into it
    exactly. keras.applications' ResNet50/101/152 are the original Caffe
    ResNet v1 (stride on the first 1x1 convolution, convolution biases,
    epsilon 1.001e-5): same parameter count, different function, and only its
    own "imagenet" weights fit it. InceptionV3, ResNetV2, EfficientNet,
    MobileNet, DenseNet and ConvNeXt come from keras.applications.

    Args:
        arch: String. A registered architecture.
        source: String or None. `"keras_hub"`, `"keras_applications"`, or
            None for the default of `arch`. Defaults to `None`.

    Returns:
        The source name.
    """
    return backbone_registry.get_backbone_spec(arch, source).source


def backbone_preprocessing(arch, source=None, weights=None):
    """The input normalisation that a backbone (and its pre-trained weights) expect.

    Returns a mode of `keras_rollback.data.pipeline.normalize_images`:
    `"torch"` (scale to [0, 1], ImageNet mean/std; torchvision and keras-hub
    ResNets), `"caffe"` (BGR minus the ImageNet mean pixel; keras.applications
    ResNets), `"tf"` (scale to [-1, 1]; InceptionV3) or `"none"` (models that
    normalise their own [0, 255] inputs). Named weights state their own;
    otherwise the family's is returned.

    Args:
        arch: String. A registered architecture.
        source: String or None. See `resolve_source`. Defaults to `None`.
        weights: String or None. A weights name of the architecture
            (`"torchvision_v1"`, `"imagenet"`, ...); None or a file path gives
            the family's preprocessing. Defaults to `None`.

    Returns:
        A preprocessing mode.
    """
    spec = backbone_registry.get_backbone_spec(arch, source)
    if isinstance(weights, str) and weights in spec.weights.get(arch, {}):
        return spec.weights[arch][weights].preprocessing
    return spec.preprocessing


def weights_provenance(arch, weights, source=None):
    """What `build_backbone(arch, weights=weights, source=source)` loads, as a record.

    Named weights give their `WeightSource.provenance()`. A torchvision source
    adds the file read and its SHA-256: from the manifest of `weights_home()`
    once converted, else by finding the file (downloading it when online;
    `MissingWeightsError` when neither) and hashing it. A weight file gives its
    path and SHA-256; None gives a record of random initialisation.

    Example:

    ```python
    weights_provenance("resnet50", "torchvision_v1")
    # {"weights": "torchvision_v1", "kind": "torchvision", "file": "resnet50-0676ba61.pth",
    #  "sha256": "0676ba61...", "top1": 76.13, "preprocessing": "torch", ...}
    ```

    Returns:
        A JSON-serialisable dict.
    """
    if weights is None:
        return {"weights": None, "description": "random initialisation"}
    spec = backbone_registry.get_backbone_spec(arch, source)
    named = _named_weights(spec, arch, weights)
    if named is not None:
        if named.kind == "torchvision":
            return weight_source.torchvision_provenance(named)
        return named.provenance()
    path = _weight_file(weights, arch, spec.source)
    return {
        "weights": "file",
        "description": f"weight file {os.path.basename(path)}",
        "file": os.path.abspath(path),
        "sha256": sha256_of_file(path),
    }


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

    Every architecture is an entry of a registered family
    (`keras_rollback/models/backbone_presets.py`): its builder, its weight
    sources and the preprocessing each expects. The ResNets of the paper
    (ResNet-34/50/101, and ResNet-18/152) are built by default as keras-hub
    `ResNetBackbone`s with torchvision's layout (see `resolve_source`), whose
    weight paths `BlockPartition.for_model` splits into `stem,
    conv2_x..conv5_x`; InceptionV3 comes from keras.applications (blocks
    `B1..B4`). The output is the last feature map: 512 channels for
    ResNet-18/34, 2048 for ResNet-50/101/152 and InceptionV3.

    `weights="torchvision_v1"` loads the authors' weights: torchvision's
    `IMAGENET1K_V1` file (`resnet50-0676ba61.pth` for ResNet-50), or without
    torch the same weights as timm's safetensors file
    (`resnet50.tv_in1k.safetensors`), looked up in `weights_home()/torchvision`
    (`$KERAS_ROLLBACK_HOME`, by default `~/.keras/keras_rollback`), downloaded
    there when online, checked against its SHA-256 and converted once into
    `weights_home()/converted`. Offline and without the file, a
    `MissingWeightsError` says which files to download from where and the
    folder to put them in.

    Example:

    ```python
    backbone = build_backbone("resnet50", weights="torchvision_v1",
                              input_shape=(288, 144, 3))
    preprocessing = backbone_preprocessing("resnet50", weights="torchvision_v1")  # "torch"
    ```

    Args:
        arch: String. A registered architecture: `"resnet18"`, `"resnet34"`,
            `"resnet50"`, `"resnet101"`, `"resnet152"`, `"inception_v3"`,
            `"resnet50_v2"`, `"efficientnet_b0"`, `"mobilenet_v2"`,
            `"densenet121"`, `"convnext_tiny"`, ... (`ARCHITECTURES`).
            Defaults to `"resnet50"`.
        weights: None (random initialisation); a weights name of the
            architecture: `"torchvision_v1"` (torchvision ResNets),
            `"keras_hub_timm_a1"` (keras-hub's presets, converted from timm's
            `a1_in1k` weights: not the paper's), `"imagenet"` (the source
            library's own: that keras-hub preset, or keras.applications'
            weights, for ResNets the Caffe-converted originals); a torchvision
            state_dict file (`.pth`, `.pt`, `.bin` or `.safetensors`; keras-hub
            source only, converted by `load_torchvision_weights`); or a Keras
            `.weights.h5` file of this backbone (loaded strictly by
            `load_weights_strict`). `weights_provenance` says what a choice
            loads. Defaults to `None`.
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
    spec = backbone_registry.get_backbone_spec(arch, source)
    if last_stride not in (1, 2) or isinstance(last_stride, bool):
        raise ValueError(f"`last_stride` must be 1 or 2. Received: last_stride={last_stride!r}")
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be a tuple of 3 dimensions. Received: input_shape={input_shape!r}"
        )
    input_shape = tuple(input_shape)
    name = name or f"{arch}_backbone"
    named = _named_weights(spec, arch, weights)
    weight_file = None if named is not None else _weight_file(weights, arch, spec.source)
    pretrained = named if named is not None and named.kind != "torchvision" else None
    try:
        model = spec.build(
            spec,
            arch,
            input_shape=input_shape,
            last_stride=last_stride,
            name=name,
            pretrained=pretrained,
        )
    except Exception as e:
        if pretrained is None or isinstance(e, ValueError):
            raise
        # The torchvision files are an offline alternative for the ResNets only.
        torchvision_alternative = (
            f", or use weights='torchvision_v1' with the file placed in "
            f"{weight_source.weights_home()}/torchvision"
            if "torchvision_v1" in spec.weights.get(arch, {})
            else ""
        )
        raise weight_source.MissingWeightsError(
            f"The {pretrained.description} could not be loaded ({str(e).splitlines()[0]}). "
            f"{'keras-hub' if pretrained.kind == 'keras_hub' else 'keras.applications'} downloads "
            "them on first use into its own cache (Kaggle's / ~/.keras/models): run once "
            f"online{torchvision_alternative}."
        ) from None
    if named is not None:
        if named.kind == "torchvision":
            weight_source.load_torchvision_source(model, named)
        logging.info("Backbone %s: %s.", name, named.description)
    if weight_file is not None:
        if weight_file.endswith(".weights.h5"):
            load_weights_strict(model, weight_file)
        else:
            load_torchvision_weights(model, weight_file)
    return model


def resolve_backbone(backbone, *, weights, source, input_shape, last_stride):
    """The backbone model a head is built on, and the name the head's model is given after it.

    Args:
        backbone: String (an architecture, built by `build_backbone`) or a
            `keras.Model` (used as it is; load its weights before passing it).
        weights, source, input_shape, last_stride: As `build_backbone`; for a
            given model, `weights` and `source` must be None.

    Returns:
        `(backbone_model, label)`: the architecture name, or the model's name.
    """
    if isinstance(backbone, keras.Model):
        if weights is not None or source is not None:
            raise ValueError(
                "`weights` and `source` apply to a backbone built by name; load the weights of a given "
                f"backbone model before passing it. Received: weights={weights!r}, source={source!r}"
            )
        return backbone, backbone.name
    if isinstance(backbone, str):
        model = build_backbone(
            backbone,
            weights=weights,
            source=source,
            input_shape=input_shape,
            last_stride=last_stride,
        )
        return model, backbone
    raise ValueError(
        f"`backbone` must be an architecture name or a keras.Model. Received: backbone={backbone!r}"
    )


def _named_weights(spec, arch, weights):
    """The `WeightSource` that `weights` names for `arch`, None for a file or None."""
    if not isinstance(weights, str) or weights.endswith(
        (".weights.h5", *TORCH_CHECKPOINT_SUFFIXES)
    ):
        return None
    available = spec.weights.get(arch, {})
    if weights == "imagenet" and "imagenet" not in available:
        raise ValueError(
            f"{'keras-hub' if spec.source == 'keras_hub' else spec.source} has no ImageNet preset "
            f"for {arch}. Received: arch={arch!r}, weights='imagenet'. Use "
            f"{sorted(available) or 'a weight file'}; a torchvision checkpoint converts with "
            f"`python -m keras_rollback.models.convert_torchvision --arch {arch} --input "
            f"{arch}.pth --output {arch}.weights.h5`."
        )
    if weights in available:
        return available[weights]
    if os.path.splitext(weights)[1]:  # A file name: checked by `_weight_file`.
        return None
    return spec.weight_source(arch, weights)


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
        raise WeightFileError(
            f"Unknown weight file type. Received: weights={path!r}. Expected a Keras '.weights.h5' file or "
            f"a torchvision state_dict ({', '.join(TORCH_CHECKPOINT_SUFFIXES)})."
        )
    if not os.path.isfile(path):
        raise WeightFileNotFoundError(f"Weight file not found. Received: weights={path!r}")
    return path
