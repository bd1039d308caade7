"""ReIDEvaluationCallback: query/gallery evaluation every few epochs, into `logs`."""

import keras
from absl import logging

from keras_rollback.evaluation.feature_extraction import extract_features
from keras_rollback.metrics import distance
from keras_rollback.metrics import ranking


class ReIDEvaluationCallback(keras.callbacks.Callback):
    """Evaluate re-identification on a query and a gallery set every `every_n_epochs` epochs.

    Extracts query and gallery features (flip TTA, L2 normalisation, as the rolling-back
    authors' code), scores them under the Market-1501 protocol, and writes rank-k, mAP and
    mINP into the epoch's `logs`, so `History`, `CSVLogger` and `TensorBoard` record them
    (the paper's Figure 4 plots mAP over epochs). Put it *before* those callbacks in the
    `callbacks` list: they read `logs` after it has written there. On epochs without an
    evaluation nothing is added, so a `CSVLogger` that first sees an epoch without them
    does not create their columns; evaluate on epoch 1 (`every_n_epochs=1`) to have them.

    Example:

    ```python
    features = keras.Model(model.input, model.get_layer("pool").output)
    callback = ReIDEvaluationCallback(query_ds, gallery_ds, feature_model=features,
                                      every_n_epochs=5)
    model.fit(train_ds, epochs=40, callbacks=[callback, keras.callbacks.CSVLogger("log.csv")])
    ```

    Args:
        query_data: Iterable of dict batches (`image`, `pid`, `camid`, `path`), e.g. a
            `tf.data.Dataset`; iterated once per evaluation.
        gallery_data: Same, for the gallery.
        feature_model: Keras model sharing weights with the trained model and returning the
            embedding. `None` uses the trained model's own output. Defaults to `None`.
        every_n_epochs: Int. Evaluate after epochs `n, 2n, ...` (1-based). Defaults to `1`.
        ranks: Tuple of ints. CMC ranks logged as `rank{k}`. Defaults to `(1, 5, 10)`.
        max_rank: Int. Length of the CMC curve of the returned `RankingScores`, at least
            `max(ranks)`. `None` means `max(ranks)`. Defaults to `None`.
        metric: String, `"euclidean"` (squared L2) or `"cosine"`. Defaults to `"euclidean"`.
        ap_method: String, `"trapezoidal"` (official Market-1501 code) or
            `"non_interpolated"` (torchreid, sklearn). Defaults to `"trapezoidal"`.
        flip: Bool. Flip test-time augmentation. Defaults to `True`.
        rerank: Bool. Score the k-reciprocal re-ranked distances (Zhong et al., CVPR 2017;
            k1=20, k2=6, lambda=0.3) instead of the plain ones. It costs a few gallery-sized
            passes more per evaluation, so it is usually kept for the final one. Defaults to
            `False`.
        prefix: String put before each log key. Defaults to `"val_"`.
        verbose: Int. 1 logs the scores (absl.logging) after each evaluation. Defaults to `0`.
    """

    def __init__(
        self,
        query_data,
        gallery_data,
        feature_model=None,
        every_n_epochs=1,
        ranks=(1, 5, 10),
        max_rank=None,
        metric="euclidean",
        ap_method="trapezoidal",
        flip=True,
        rerank=False,
        prefix="val_",
        verbose=0,
    ):
        super().__init__()
        if (
            isinstance(every_n_epochs, bool)
            or not isinstance(every_n_epochs, int)
            or every_n_epochs < 1
        ):
            raise ValueError(
                f"Received: every_n_epochs={every_n_epochs!r}. Expected a positive integer."
            )
        ranks = tuple(ranks)
        if not ranks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ranks):
            raise ValueError(
                f"Received: ranks={ranks!r}. Expected a non-empty tuple of positive integers."
            )
        if max_rank is None:
            max_rank = max(ranks)
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < max(ranks):
            raise ValueError(
                f"Received: max_rank={max_rank!r}. Expected an integer >= max(ranks) = "
                f"{max(ranks)}."
            )
        if metric not in distance.METRICS:
            raise ValueError(f"Received: metric={metric!r}. Expected one of {distance.METRICS}.")
        if ap_method not in ranking.AP_METHODS:
            raise ValueError(
                f"Received: ap_method={ap_method!r}. Expected one of {ranking.AP_METHODS}."
            )
        if not isinstance(rerank, bool):
            raise ValueError(f"Received: rerank={rerank!r}. Expected True or False.")
        if verbose not in (0, 1):
            raise ValueError(f"Received: verbose={verbose!r}. Expected 0 or 1.")
        if feature_model is not None and not callable(feature_model):
            raise ValueError(
                f"Received: feature_model={feature_model!r}. Expected a Keras model or None."
            )
        self.query_data = query_data
        self.gallery_data = gallery_data
        self.feature_model = feature_model
        self.every_n_epochs = every_n_epochs
        self.ranks = ranks
        self.max_rank = max_rank
        self.metric = metric
        self.ap_method = ap_method
        self.flip = flip
        self.rerank = rerank
        self.prefix = prefix
        self.verbose = verbose
        self.history = {}
        # The (query, gallery) features of the last evaluation, from `extract_features`.
        self.last_features = None

    def on_train_begin(self, logs=None):
        self.history = {}

    def evaluate(self):
        """Runs one evaluation now; returns the `RankingScores` (features in `last_features`)."""
        # Reading `self.model` first syncs the weights on JAX (they live outside the
        # variables during an epoch); a feature model sharing them then sees them too.
        trained_model = self.model
        feature_model = self.feature_model if self.feature_model is not None else trained_model
        query = extract_features(feature_model, self.query_data, flip=self.flip, verbose=0)
        gallery = extract_features(feature_model, self.gallery_data, flip=self.flip, verbose=0)
        self.last_features = (query, gallery)
        return ranking.ranking_scores_from_features(
            query["features"],
            gallery["features"],
            query["pid"],
            gallery["pid"],
            query["camid"],
            gallery["camid"],
            metric=self.metric,
            max_rank=self.max_rank,
            ap_method=self.ap_method,
            rerank=self.rerank,
        )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        scores = self.evaluate().as_logs(ranks=self.ranks, prefix=self.prefix)
        self.history[epoch] = scores
        if logs is not None:
            logs.update(scores)
        if self.verbose:
            logging.info(
                "Epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
            )
