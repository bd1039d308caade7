"""Tests for keras_rollback.evaluation.ReIDEvaluator (no training involved)."""

import keras
import numpy as np
import pytest

from keras_rollback.evaluation import ReIDEvaluator
from keras_rollback.evaluation import extract_features
from keras_rollback.metrics import reference_ranking_scores


def batches(seed, cameras=True):
    """Two images of each of 4 identities whose colour encodes the identity."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(1, 5), 2).astype(np.int32)
    batch = {
        "image": (pids[:, None, None, None] / 4.0 + 0.2 * rng.random((8, 8, 8, 3))).astype(
            np.float32
        ),
        "pid": pids,
        "path": np.array([f"{seed}_{i}.jpg" for i in range(8)]),
    }
    if cameras:
        batch["camid"] = np.tile([1, 2], 4).astype(np.int32)
    return [batch]


def feature_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))


def test_extracts_and_scores_like_the_reference_loop():
    model = feature_model()
    evaluator = ReIDEvaluator(batches(0), batches(1), ap_method="non_interpolated")
    scores = evaluator(model)
    query, gallery = evaluator.last_features
    assert evaluator.last_scores is scores
    distances = ((query["features"][:, None] - gallery["features"][None]) ** 2).sum(-1)
    expected = reference_ranking_scores(
        distances,
        query["pid"],
        gallery["pid"],
        query["camid"],
        gallery["camid"],
        max_rank=10,
        ap_method="non_interpolated",
    )
    np.testing.assert_allclose(scores.average_precision, expected.average_precision, atol=1e-9)
    assert set(scores.as_logs(ranks=evaluator.ranks)) == {"rank1", "rank5", "rank10", "mAP", "mINP"}


def test_without_cameras_the_query_image_itself_is_excluded():
    # The gallery is the query set: each image queries the others.
    model = feature_model()
    data = batches(0, cameras=False)
    evaluator = ReIDEvaluator(data, data, query_gallery_indices=np.arange(8), ranks=(1,))
    scores = evaluator(model)
    query, gallery = evaluator.last_features
    assert query["camid"] is None
    features = query["features"]
    distances = ((features[:, None] - features[None]) ** 2).sum(-1)
    expected = reference_ranking_scores(
        distances,
        query["pid"],
        gallery["pid"],
        None,
        None,
        max_rank=1,
        query_gallery_indices=np.arange(8),
    )
    np.testing.assert_array_equal(scores.first_match_rank, expected.first_match_rank)
    assert (scores.first_match_rank >= 0).all()


def test_batches_must_agree_on_cameras():
    with pytest.raises(ValueError, match="Batch 1 of `dataset` lacks `camid`"):
        extract_features(feature_model(), batches(0) + batches(1, cameras=False), verbose=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ranks=()), r"ranks=\(\)"),
        (dict(ranks=(1, 5), max_rank=3), "max_rank=3"),
        (dict(metric="l1"), "metric='l1'"),
        (dict(ap_method="11-point"), "ap_method='11-point'"),
        (dict(rerank="yes"), "rerank='yes'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReIDEvaluator([], [], **kwargs)
