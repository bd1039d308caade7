"""ReIDEvaluator: extract query and gallery features with a model, and score them."""

from keras_rollback.evaluation.feature_extraction import extract_features
from keras_rollback.metrics import distance
from keras_rollback.metrics import ranking


class ReIDEvaluator:
    """Query-vs-gallery evaluation of a feature model under the Market-1501 protocol.

    A plain object, usable with or without training: `extract` computes the query and
    gallery features (flip test-time augmentation, L2 normalisation, as the rolling-back
    authors' code), `score` ranks them (`ranking_scores_from_features`), and calling the
    evaluator does both and keeps the last features and scores (for pictures); `evaluate`
    does the same and returns the scores as a dict of floats. The evaluator carries the
    data and every option of the evaluation: `ReIDEvaluationCallback(evaluator, ...)` runs
    it during `fit`.

    Example:

    ```python
    evaluator = ReIDEvaluator(query_ds, gallery_ds, ap_method="non_interpolated")
    scores = evaluator(feature_model)
    scores.as_logs(ranks=evaluator.ranks)  # {"rank1": ..., "rank5": ..., "mAP": ..., ...}
    evaluator.evaluate(feature_model)  # The same dict, in one call.
    ```

    A dataset without cameras (e.g. `read_folder_dataset` with no `camid` group) has no
    `camid` in its batches; when its query images are gallery images too (one folder for
    both), pass `query_gallery_indices=dataset.query_gallery_indices()` so that each query
    image is left out of its own ranked list.

    Args:
        query_data: Iterable of dict batches (`image`, `pid`, `camid`, `path`), e.g. a
            `tf.data.Dataset`; iterated once per evaluation. Without `camid` in the
            batches (no cameras), only id -1 and the query image itself
            (`query_gallery_indices`) are junk.
        gallery_data: Same, for the gallery.
        ranks: Tuple of ints. CMC ranks of `as_logs`. Defaults to `(1, 5, 10)`.
        max_rank: Int. Length of the CMC curve, at least `max(ranks)`. `None` means
            `max(ranks)`. Defaults to `None`.
        metric: String, `"euclidean"` (squared L2) or `"cosine"`. Defaults to `"euclidean"`.
        ap_method: String, `"trapezoidal"` (official Market-1501 code) or
            `"non_interpolated"` (torchreid, sklearn). Defaults to `"trapezoidal"`.
        flip: Bool. Flip test-time augmentation. Defaults to `True`.
        rerank: Bool. Score the k-reciprocal re-ranked distances (Zhong et al., CVPR 2017;
            k1=20, k2=6, lambda=0.3). Defaults to `False`.
        query_gallery_indices: Array-like of ints or None. The gallery position of each
            query image (-1 if not in the gallery), excluded from its own ranking; see
            `ranking_scores`. Defaults to `None`.
    """

    def __init__(
        self,
        query_data,
        gallery_data,
        *,
        ranks=(1, 5, 10),
        max_rank=None,
        metric="euclidean",
        ap_method="trapezoidal",
        flip=True,
        rerank=False,
        query_gallery_indices=None,
    ):
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
        self.query_data = query_data
        self.gallery_data = gallery_data
        self.ranks = ranks
        self.max_rank = max_rank
        self.metric = metric
        self.ap_method = ap_method
        self.flip = flip
        self.rerank = rerank
        self.query_gallery_indices = query_gallery_indices
        # The (query, gallery) features and the scores of the last call.
        self.last_features = None
        self.last_scores = None

    def extract(self, feature_model):
        """`(query, gallery)` dicts of `extract_features` (features, pid, camid, path)."""
        query = extract_features(feature_model, self.query_data, flip=self.flip, verbose=0)
        gallery = extract_features(feature_model, self.gallery_data, flip=self.flip, verbose=0)
        return query, gallery

    def score(self, query, gallery):
        """`RankingScores` of the query features against the gallery features."""
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
            query_gallery_indices=self.query_gallery_indices,
            rerank=self.rerank,
            verbose=0,
        )

    def __call__(self, feature_model):
        """Extracts and scores; returns the `RankingScores` (kept in `last_scores`)."""
        self.last_features = self.extract(feature_model)
        self.last_scores = self.score(*self.last_features)
        return self.last_scores

    def evaluate(self, feature_model):
        """Extracts and scores; returns `{"rank<k>": ..., "mAP": ..., "mINP": ...}` floats for
        `ranks` (the `Evaluator` interface of `ReIDEvaluationCallback`)."""
        return self(feature_model).as_logs(ranks=self.ranks)
