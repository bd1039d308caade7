"""The Bag of Tricks ReID model (Luo et al., 2019): backbone, pooled feature, BNNeck, classifier."""

import keras

from keras_rollback.models.reid_model import POOLED_FEATURE
from keras_rollback.models.reid_model import call_backbone
from keras_rollback.models.reid_model import pool_feature
from keras_rollback.models.reid_model import resolve_reid_backbone

BNNECK = "bnneck"
TRAINING_OUTPUT = "logits_and_feature"


def build_bnneck_model(
    num_classes,
    backbone="resnet50",
    *,
    weights=None,
    source=None,
    input_shape=(256, 128, 3),
    last_stride=1,
    bnneck=True,
    token_pooling="class",
    name=None,
):
    """Builds the strong ReID baseline's model: pooled feature -> BNNeck -> bias-free classifier.

    backbone -> global average pooling, or a transformer's class / mean patch token
    (`pooled_feature`, what the triplet loss sees) ->
    BatchNorm without shift (`bnneck`; the inference feature) -> Dense(`num_classes`, no
    bias). The model returns ONE tensor, the logits followed by the pooled feature,
    `[B, num_classes + D]`, for `ReIDLoss` (cross-entropy on the logits, triplet on the
    feature); one output keeps every Keras component that takes the model's loss and
    labels unchanged, `RollbackRefine` and `BlockDiagnostics` included. The head
    (`bnneck`, `classifier`) is outside the backbone, so `BlockPartition.for_model` puts it
    in its own group, never rolled back. `build_bnneck_feature_model` gives the evaluation
    feature (after the BNNeck, as the paper's baseline evaluates).

    Example:

    ```python
    model = build_bnneck_model(751, "resnet50", weights="resnet50-0676ba61.pth")
    model.compile(optimizer=LayerwiseSGD(),
                  loss=ReIDLoss(751, label_smoothing=0.1, triplet_weight=1.0))
    model.fit(identity_batches, callbacks=[RollbackRefine(BlockPartition.for_model(model))])
    ```

    Args:
        num_classes: Integer > 1. Number of training identities.
        backbone: String (an architecture of `build_backbone`) or a `keras.Model` mapping
            images to a 4-D feature map. Defaults to `"resnet50"`.
        weights: Backbone weights, see `build_backbone`; None when `backbone` is a model.
            Defaults to `None`.
        source: String or None. Backbone source, see `build_backbone`. Defaults to `None`.
        input_shape: Tuple. Image shape (height, width, channels). Defaults to
            `(256, 128, 3)` (Bag of Tricks). A keras-hub ViT or DeiT preset of another size
            is loaded at its size and its position embedding resampled to this one.
        last_stride: 1 or 2. Stride of the last ResNet stage (keras-hub ResNets). Defaults
            to `1` (Bag of Tricks).
        bnneck: Bool. Put the BNNeck between the feature and the classifier; `False` gives
            the baseline without it (classifier on the pooled feature, evaluated on it).
            Defaults to `True`.
        name: String or None. Model name. Defaults to `"bnneck_<backbone>"`.

    Returns:
        A functional `keras.Model` from images to `[B, num_classes + D]`.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Received: num_classes={num_classes!r}. Expected an integer > 1.")
    if not isinstance(bnneck, bool):
        raise ValueError(f"Received: bnneck={bnneck!r}. Expected True or False.")
    backbone_model, label = resolve_reid_backbone(
        backbone, weights=weights, source=source, input_shape=input_shape, last_stride=last_stride
    )
    images = keras.Input(shape=tuple(input_shape), name="images")
    feature = pool_feature(backbone_model, call_backbone(backbone_model, images), token_pooling)
    classified = feature
    if bnneck:
        # torch's BatchNorm1d defaults (epsilon 1e-5, momentum 0.1); the shift is frozen
        # at 0 in the paper (`bias.requires_grad_(False)`): no beta here.
        classified = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, center=False, name=BNNECK
        )(feature)
    logits = keras.layers.Dense(
        num_classes,
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.001),
        name="classifier",
    )(classified)
    outputs = keras.layers.Concatenate(name=TRAINING_OUTPUT, dtype="float32")([logits, feature])
    return keras.Model(images, outputs, name=name or f"bnneck_{label}")


def build_bnneck_feature_model(model, name=None):
    """The evaluation feature of a `build_bnneck_model` model: after the BNNeck if it has one.

    Shares every weight with `model`.

    Args:
        model: A model from `build_bnneck_model`.
        name: String or None. Defaults to `"<model.name>_features"`.

    Returns:
        A functional `keras.Model` from images to `(batch, feature_dim)`.
    """
    layer_names = {layer.name for layer in model.layers}
    if TRAINING_OUTPUT not in layer_names:
        raise ValueError(
            f"Model {model.name!r} has no {TRAINING_OUTPUT!r} layer: pass a model built by "
            "build_bnneck_model."
        )
    layer = model.get_layer(BNNECK if BNNECK in layer_names else POOLED_FEATURE)
    return keras.Model(model.input, layer.output, name=name or f"{model.name}_features")
