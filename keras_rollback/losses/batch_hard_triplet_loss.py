"""`BatchHardTripletLoss`: the batch-hard triplet loss of Hermans et al. (2017)."""

import keras
from keras import ops


def batch_hard_triplet_loss(labels, features, margin):
    """Per-anchor `max(0, d(a, hardest positive) - d(a, hardest negative) + margin)`.

    Euclidean (not squared) distances between the features of one batch, as in the Bag of
    Tricks baseline (Luo et al., 2019) and torchreid's `TripletLoss`.

    Args:
        labels: int tensor `[B]`. Identity of each feature.
        features: float tensor `[B, D]`.
        margin: float > 0.

    Returns:
        float32 tensor `[B]`.
    """
    features = ops.cast(features, "float32")
    labels = ops.reshape(labels, (-1,))
    squared = ops.sum(ops.square(features), axis=1)
    distances = (
        squared[:, None] + squared[None, :] - 2.0 * ops.matmul(features, ops.transpose(features))
    )
    distances = ops.sqrt(ops.maximum(distances, 1e-12))
    same = ops.equal(labels[:, None], labels[None, :])
    hardest_positive = ops.max(ops.where(same, distances, 0.0), axis=1)
    largest = ops.max(distances)
    hardest_negative = ops.min(ops.where(same, largest + 1.0, distances), axis=1)
    return ops.relu(hardest_positive - hardest_negative + margin)


@keras.saving.register_keras_serializable(package="keras_rollback")
class BatchHardTripletLoss(keras.losses.Loss):
    """Batch-hard triplet loss on embeddings (Hermans et al., "In Defense of the Triplet Loss").

    For each anchor of the batch, its farthest same-identity feature (hardest positive)
    and its nearest other-identity feature (hardest negative) give
    `max(0, d_ap - d_an + margin)` with Euclidean distances; the loss is the mean over
    anchors. Batches must hold several images per identity: use an identity sampler
    (`make_identity_train_dataset`, P identities x K images). An anchor without positive
    has `d_ap = 0`.

    Example:

    ```python
    model.compile(optimizer=LayerwiseSGD(), loss=BatchHardTripletLoss(margin=0.3))
    model.fit(make_identity_train_dataset(dataset.train, ...)[0], ...)  # labels, embeddings
    ```

    Args:
        margin: Float > 0. The margin. Defaults to `0.3` (Bag of Tricks).
        name: String. Defaults to `"batch_hard_triplet"`.
        **kwargs: Other `keras.losses.Loss` arguments (`reduction`, `dtype`).
    """

    def __init__(self, margin=0.3, name="batch_hard_triplet", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin <= 0:
            raise ValueError(f"Received: margin={margin!r}. Expected a float > 0.")
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return batch_hard_triplet_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
