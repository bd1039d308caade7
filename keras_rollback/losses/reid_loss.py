"""`ReIDLoss`: identity cross-entropy (label smoothing optional) plus batch-hard triplet."""

import keras
from keras import ops

from keras_rollback.losses.batch_hard_triplet_loss import batch_hard_triplet_loss


@keras.saving.register_keras_serializable(package="keras_rollback")
class ReIDLoss(keras.losses.Loss):
    """The Bag of Tricks training loss (Luo et al., 2019), one Keras loss for one output.

    `y_pred` is the identity logits `[B, num_classes]`, optionally followed by the feature
    the triplet loss sees: `[B, num_classes + D]`, as `build_bnneck_model` outputs them (one
    tensor, so every Keras component that takes a model's loss and labels, such as
    `BlockDiagnostics`, works unchanged). The loss is

    `cross_entropy(labels, logits; label_smoothing) + triplet_weight * batch_hard_triplet`

    where the label-smoothed target is `(1 - e) * one_hot + e / num_classes` (Szegedy et
    al., 2016; torchreid's `CrossEntropyLabelSmooth`).

    Example:

    ```python
    model = build_bnneck_model(751, "resnet50", weights=...)
    model.compile(optimizer=LayerwiseSGD(),
                  loss=ReIDLoss(751, label_smoothing=0.1, triplet_weight=1.0))
    ```

    Args:
        num_classes: Int > 1. Number of training identities (logit columns).
        label_smoothing: Float in `[0, 1)`. Defaults to `0.0`.
        triplet_margin: Float > 0. Margin of the batch-hard triplet loss. Defaults to `0.3`.
        triplet_weight: Float >= 0. Weight of the triplet loss; 0 leaves it out (and
            `y_pred` may be the logits alone). Defaults to `0.0`.
        name: String. Defaults to `"reid_loss"`.
        **kwargs: Other `keras.losses.Loss` arguments.
    """

    def __init__(
        self,
        num_classes,
        label_smoothing=0.0,
        triplet_margin=0.3,
        triplet_weight=0.0,
        name="reid_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"Received: num_classes={num_classes!r}. Expected an integer > 1.")
        if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
            raise ValueError(
                f"Received: label_smoothing={label_smoothing!r}. Expected a float in [0, 1)."
            )
        if not isinstance(triplet_margin, (int, float)) or triplet_margin <= 0:
            raise ValueError(f"Received: triplet_margin={triplet_margin!r}. Expected a float > 0.")
        if not isinstance(triplet_weight, (int, float)) or triplet_weight < 0:
            raise ValueError(f"Received: triplet_weight={triplet_weight!r}. Expected a float >= 0.")
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        self.triplet_margin = float(triplet_margin)
        self.triplet_weight = float(triplet_weight)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        y_pred = ops.cast(y_pred, "float32")
        width = y_pred.shape[-1]
        if self.triplet_weight and width is not None and width <= self.num_classes:
            raise ValueError(
                f"ReIDLoss with triplet_weight={self.triplet_weight} needs the logits followed "
                f"by the features, [B, {self.num_classes} + D] (build_bnneck_model); received "
                f"y_pred of shape {tuple(y_pred.shape)}."
            )
        logits = y_pred[:, : self.num_classes]
        loss = keras.losses.categorical_crossentropy(
            ops.one_hot(labels, self.num_classes),
            logits,
            from_logits=True,
            label_smoothing=self.label_smoothing,
        )
        if self.triplet_weight:
            features = y_pred[:, self.num_classes :]
            loss = loss + self.triplet_weight * batch_hard_triplet_loss(
                labels, features, self.triplet_margin
            )
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "label_smoothing": self.label_smoothing,
            "triplet_margin": self.triplet_margin,
            "triplet_weight": self.triplet_weight,
        }
