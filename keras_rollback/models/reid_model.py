"""The paper's classification model (backbone, pooled feature, new head) and its feature model."""

import random

import keras

from keras_rollback.models.backbones import resolve_backbone
from keras_rollback.models.transformer_blocks import find_transformer_backbone
from keras_rollback.models.transformer_input_size import build_transformer_at_size
from keras_rollback.models.transformer_input_size import preset_resize_needed

POOLED_FEATURE = "pooled_feature"
DEFAULT_INPUT_SHAPE = (288, 144, 3)
TOKEN_POOLINGS = ("class", "mean")


@keras.saving.register_keras_serializable(package="keras_rollback")
class TokenPooling(keras.layers.Layer):
    """The feature of a vision transformer's token sequence `(batch, tokens, dim)`.

    `"class"`: the class token (the first token); `"mean"`: the mean of the patch tokens,
    the `prefix_tokens` first tokens (class, DeiT's distillation token, DINOv2's register
    tokens) left out.

    Args:
        mode: `"class"` or `"mean"`.
        prefix_tokens: Integer >= 1. Tokens before the patch tokens.
    """

    def __init__(self, mode="class", prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in TOKEN_POOLINGS:
            raise ValueError(
                f"`token_pooling` must be one of {TOKEN_POOLINGS}. Received: token_pooling={mode!r}"
            )
        self.mode = mode
        self.prefix_tokens = int(prefix_tokens)

    def call(self, tokens):
        if self.mode == "class":
            return tokens[:, 0, :]
        return keras.ops.mean(tokens[:, self.prefix_tokens :, :], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "prefix_tokens": self.prefix_tokens}


def prefix_tokens(backbone_model):
    """How many tokens come before the patch tokens in a keras-hub transformer's output.

    ViT: its class token (none without one); DeiT: class and distillation tokens;
    DINOv2: the class token and its register tokens. Another model: 1 (a class token first).
    """
    class_name, backbone = find_transformer_backbone(backbone_model)
    if class_name == "DeiTBackbone":
        return 2
    if class_name == "DINOV2Backbone":
        return 1 + int(backbone.num_register_tokens)
    if class_name == "ViTBackbone":
        return int(bool(backbone.use_class_token))
    return 1


def resolve_reid_backbone(backbone, *, weights, source, input_shape, last_stride):
    """`resolve_backbone`, and a ViT / DeiT keras-hub preset at another input size than its own
    built with its position embedding resampled (`build_transformer_at_size`)."""
    size = preset_resize_needed(backbone, weights, source, input_shape)
    if size is None:
        return resolve_backbone(
            backbone,
            weights=weights,
            source=source,
            input_shape=input_shape,
            last_stride=last_stride,
        )
    return build_transformer_at_size(backbone, weights, source, tuple(input_shape), size), backbone


def call_backbone(backbone_model, images):
    """`backbone_model(images)`; as `{"images": images}` to a model of one named input (keras-hub's
    DINOv2), which Keras would otherwise warn about."""
    inputs = getattr(backbone_model, "input", None)
    if isinstance(inputs, dict) and len(inputs) == 1:
        return backbone_model({next(iter(inputs)): images})
    return backbone_model(images)


def pool_feature(backbone_model, feature_map, token_pooling="class"):
    """The pooled feature (layer `pooled_feature`) of a backbone's output.

    A 4-D feature map (a CNN) is average-pooled; a 3-D token sequence (a keras-hub ViT, DeiT
    or DINOv2) gives its class token (`token_pooling="class"`) or the mean of its patch
    tokens (`"mean"`), through `TokenPooling`.
    """
    if token_pooling not in TOKEN_POOLINGS:
        raise ValueError(
            f"`token_pooling` must be one of {TOKEN_POOLINGS}. Received: "
            f"token_pooling={token_pooling!r}"
        )
    if len(feature_map.shape) == 4:
        return keras.layers.GlobalAveragePooling2D(name=POOLED_FEATURE)(feature_map)
    if len(feature_map.shape) != 3:
        raise ValueError(
            f"The backbone must output a 4-D feature map or a 3-D token sequence. Received "
            f"output shape {tuple(feature_map.shape)} from {backbone_model.name!r}."
        )
    prefix = prefix_tokens(backbone_model)
    if token_pooling == "class" and prefix == 0:
        raise ValueError(f"{backbone_model.name!r} has no class token: use token_pooling='mean'.")
    return TokenPooling(token_pooling, prefix, name=POOLED_FEATURE)(feature_map)


def build_reid_model(
    num_classes,
    backbone="resnet50",
    *,
    weights=None,
    source=None,
    input_shape=DEFAULT_INPUT_SHAPE,
    last_stride=2,
    bottleneck_units=512,
    dropout=0.5,
    leaky_relu_alpha=0.1,
    token_pooling="class",
    name=None,
):
    """Builds the classification model of the paper for person ReID or fine-grained recognition.

    backbone -> global average pooling (the feature: 2048-D for ResNet-50/101,
    512-D for ResNet-34, 2048-D for InceptionV3; for a vision transformer its
    class token or mean patch token, see `token_pooling`) -> FC(`bottleneck_units`) ->
    BatchNorm -> LeakyReLU(0.1) -> Dropout(`dropout`) -> FC(`num_classes`).
    The model returns logits: use a loss with `from_logits=True`. The head is
    initialised like the authors' released code: first FC Kaiming normal
    (fan-out), BatchNorm gamma ~ N(1, 0.02), last FC ~ N(0, 0.001), zero
    biases and BatchNorm beta; its BatchNorm follows torch's `BatchNorm1d`
    (epsilon 1e-5, momentum 0.1, i.e. Keras momentum 0.9). The authors' code
    uses dropout 0.5; the paper's text has none (`dropout=0`).

    The backbone is a nested model, so `BlockPartition.for_model(model)`
    finds its blocks and puts the head (`bottleneck_fc`, `bottleneck_bn`,
    `classifier`) in its own group. `build_feature_model(model)` gives the
    pooled feature that the paper evaluates with.

    Example:

    ```python
    model = build_reid_model(751, "resnet50", weights="resnet50-0676ba61.pth")
    partition = BlockPartition.for_model(model)
    model.compile(optimizer=LayerwiseSGD(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    features = build_feature_model(model).predict(query_images)
    ```

    Args:
        num_classes: Integer > 1. Number of training identities / classes.
        backbone: String (an architecture of `build_backbone`) or a
            `keras.Model` mapping images to a 4-D feature map. Defaults to
            `"resnet50"`.
        weights: Backbone weights, see `build_backbone`; must be None when
            `backbone` is a model. Defaults to `None`.
        source: String or None. Backbone source, see `build_backbone`.
            Defaults to `None`.
        input_shape: Tuple. Input image shape without the batch size (height,
            width, channels). Defaults to `(288, 144, 3)`. A keras-hub ViT or DeiT
            preset of another (square) size is loaded at its size and its position
            embedding resampled bicubically to this one (timm's way; ReID's 256x128).
        last_stride: 1 or 2. Stride of the last ResNet stage. Defaults to `2`.
        bottleneck_units: Integer > 0. Width of the first FC layer. Defaults
            to `512`.
        dropout: Float in `[0, 1)`. Dropout rate before the classifier.
            Defaults to `0.5`.
        leaky_relu_alpha: Float >= 0. Negative slope of the LeakyReLU.
            Defaults to `0.1`.
        token_pooling: `"class"` or `"mean"`. The feature of a vision
            transformer backbone (keras-hub ViT, DeiT, DINOv2: a token
            sequence): its class token, or the mean of its patch tokens.
            Ignored for a CNN (average pooling). Defaults to `"class"`.
        name: String or None. Model name. Defaults to `"reid_<backbone>"`.

    Returns:
        A functional `keras.Model` from images to `num_classes` logits.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer > 1. Received: num_classes={num_classes!r}"
        )
    if (
        isinstance(bottleneck_units, bool)
        or not isinstance(bottleneck_units, int)
        or bottleneck_units < 1
    ):
        raise ValueError(
            f"`bottleneck_units` must be a positive integer. Received: bottleneck_units={bottleneck_units!r}"
        )
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be a float in [0, 1). Received: dropout={dropout!r}")
    if not isinstance(leaky_relu_alpha, (int, float)) or leaky_relu_alpha < 0:
        raise ValueError(
            f"`leaky_relu_alpha` must be a float >= 0. Received: leaky_relu_alpha={leaky_relu_alpha!r}"
        )
    backbone_model, label = resolve_reid_backbone(
        backbone, weights=weights, source=source, input_shape=input_shape, last_stride=last_stride
    )
    images = keras.Input(shape=tuple(input_shape), name="images")
    feature = pool_feature(backbone_model, call_backbone(backbone_model, images), token_pooling)
    x = keras.layers.Dense(
        bottleneck_units,
        kernel_initializer=keras.initializers.VarianceScaling(
            2.0, mode="fan_out", distribution="untruncated_normal"
        ),
        bias_initializer="zeros",
        name="bottleneck_fc",
    )(feature)
    x = keras.layers.BatchNormalization(
        momentum=0.9,
        epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
        beta_initializer="zeros",
        name="bottleneck_bn",
    )(x)
    x = keras.layers.LeakyReLU(negative_slope=leaky_relu_alpha, name="bottleneck_leaky_relu")(x)
    if dropout:
        # An explicit seed (drawn from the global one) gives the layer a generator state
        # that checkpoints restore; without one the torch backend uses torch's global RNG.
        seed = random.randrange(2**31)
        x = keras.layers.Dropout(dropout, seed=seed, name="bottleneck_dropout")(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.001),
        bias_initializer="zeros",
        name="classifier",
    )(x)
    return keras.Model(images, logits, name=name or f"reid_{label}")


def build_feature_model(reid_model, name=None):
    """The model that returns the pooled backbone feature of a `build_reid_model` model.

    It shares every layer (and so every weight) with `reid_model`: training
    the classifier changes the features. This is the paper's test feature
    (2048-D for ResNet-50), not the 512-D bottleneck.

    Args:
        reid_model: A model from `build_reid_model`.
        name: String or None. Model name. Defaults to
            `"<reid_model.name>_features"`.

    Returns:
        A functional `keras.Model` from images to `(batch, feature_dim)`.
    """
    try:
        pooled = reid_model.get_layer(POOLED_FEATURE)
    except ValueError:
        raise ValueError(
            f"Model {getattr(reid_model, 'name', reid_model)!r} has no {POOLED_FEATURE!r} layer: "
            "pass a model built by build_reid_model."
        ) from None
    return keras.Model(reid_model.input, pooled.output, name=name or f"{reid_model.name}_features")
