"""Tests for keras_rollback.metrics.reranking: the vectorised path vs the authors' loops."""

import warnings

import numpy as np
import pytest

from keras_rollback.metrics import k_reciprocal_rerank
from keras_rollback.metrics import ranking_scores
from keras_rollback.metrics import ranking_scores_from_features


def reference_rerank(query, gallery, k1, k2, lambda_value, metric="euclidean"):
    """`re_ranking` of github.com/zhunzhong07/person-re-ranking, image by image, in float64."""
    features = np.concatenate([query, gallery]).astype(np.float64)
    if metric == "cosine":
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        original_dist = 1.0 - unit @ unit.T
    else:
        original_dist = ((features[:, None, :] - features[None, :, :]) ** 2).sum(axis=2)
    query_num, all_num = len(query), len(features)
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist)
    initial_rank = np.argsort(original_dist, kind="stable")
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for candidate in k_reciprocal_index:
            half = int(np.around(k1 / 2.0)) + 1
            candidate_forward = initial_rank[candidate, :half]
            candidate_backward = initial_rank[candidate_forward, :half]
            fi_candidate = np.where(candidate_backward == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > (
                2.0 / 3 * len(candidate_k_reciprocal_index)
            ):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist)
    for i in range(query_num):
        temp_min = np.zeros(all_num)
        indNonZero = np.where(V[i, :] != 0)[0]
        for j in indNonZero:
            images = invIndex[j]
            temp_min[images] += np.minimum(V[i, j], V[images, j])
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:, query_num:]


@pytest.mark.parametrize(
    "seed, num_queries, num_gallery, dim, k1, k2, lambda_value, metric, chunk_size",
    # Mostly 50 images of 8 features: one shape for the backends that compile per shape.
    [
        (0, 6, 44, 8, 5, 2, 0.3, "euclidean", None),
        (1, 10, 40, 8, 20, 6, 0.3, "euclidean", 7),  # the paper's setting, chunked rows
        (2, 4, 46, 8, 3, 1, 0.0, "euclidean", None),
        (3, 8, 42, 8, 7, 7, 1.0, "euclidean", None),
        (4, 5, 45, 8, 6, 3, 0.5, "cosine", None),
        (5, 3, 9, 8, 20, 6, 0.3, "euclidean", None),  # fewer images than k1 + 1
        (6, 1, 49, 8, 1, 1, 0.3, "euclidean", None),  # k1 = 1: round(1 / 2) = 0
        (7, 12, 38, 2, 10, 4, 0.3, "euclidean", 16),  # 2-D: large overlapping neighbourhoods
    ],
)
def test_matches_reference_loops(
    seed, num_queries, num_gallery, dim, k1, k2, lambda_value, metric, chunk_size
):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(num_queries, dim)).astype("float32")
    gallery = rng.normal(size=(num_gallery, dim)).astype("float32")
    got = k_reciprocal_rerank(
        query,
        gallery,
        k1=k1,
        k2=k2,
        lambda_value=lambda_value,
        metric=metric,
        chunk_size=chunk_size,
    )
    assert got.shape == (num_queries, num_gallery) and got.dtype == np.float32
    expected = reference_rerank(query, gallery, k1, k2, lambda_value, metric)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_clustered_identities_rerank_improves_map():
    """Clusters are identities; queries and gallery see them through different cameras."""
    rng = np.random.default_rng(0)
    num_ids, per_id, dim = 60, 8, 32
    centers = rng.normal(size=(num_ids, dim))
    pids = np.repeat(np.arange(1, num_ids + 1), per_id)
    cams = np.tile(np.arange(per_id) % 4, num_ids)
    features = (centers[pids - 1] + 1.2 * rng.normal(size=(len(pids), dim))).astype("float32")
    is_query = np.tile(np.arange(per_id) == 0, num_ids)
    args = (
        features[is_query],
        features[~is_query],
        pids[is_query],
        pids[~is_query],
        cams[is_query],
        cams[~is_query],
    )
    plain = ranking_scores_from_features(*args, ap_method="non_interpolated")
    reranked = ranking_scores_from_features(*args, ap_method="non_interpolated", rerank=True)
    assert 0.3 < plain.mean_average_precision < 0.8
    assert reranked.mean_average_precision > plain.mean_average_precision + 0.1  # 0.52 -> 0.69


def test_rerank_option_scores_the_reranked_distances_with_junk_in_the_gallery():
    rng = np.random.default_rng(1)
    query = rng.normal(size=(6, 8)).astype("float32")
    gallery = rng.normal(size=(40, 8)).astype("float32")
    ids = (
        rng.integers(1, 4, 6),
        rng.integers(-1, 4, 40),
        rng.integers(0, 2, 6),
        rng.integers(0, 3, 40),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some random queries have no valid match
        expected = ranking_scores(k_reciprocal_rerank(query, gallery), *ids, max_rank=5)
        got = ranking_scores_from_features(query, gallery, *ids, max_rank=5, rerank=True)
    np.testing.assert_allclose(got.average_precision, expected.average_precision)
    np.testing.assert_array_equal(got.cmc, expected.cmc)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_ties_are_broken_by_index(seed):
    # Small integer features give exact float32 distances: duplicated images and equal
    # distances tie exactly, and the neighbours must follow the reference's stable argsort.
    rng = np.random.default_rng(seed)
    base = rng.integers(-1, 2, size=(8, 3)).astype("float32")
    features = base[rng.integers(0, len(base), 40)]
    query, gallery = features[:6], features[6:]
    expected = reference_rerank(query, gallery, 5, 3, 0.3)
    for chunk_size in (None, 3):
        got = k_reciprocal_rerank(query, gallery, k1=5, k2=3, chunk_size=chunk_size)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_backend_tensors_are_accepted():
    from keras import ops

    rng = np.random.default_rng(3)
    query = rng.normal(size=(3, 5)).astype("float32")
    gallery = rng.normal(size=(20, 5)).astype("float32")
    np.testing.assert_allclose(
        k_reciprocal_rerank(
            ops.convert_to_tensor(query), ops.convert_to_tensor(gallery), k1=4, k2=2
        ),
        k_reciprocal_rerank(query, gallery, k1=4, k2=2),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "query, gallery, kwargs, message",
    [
        (np.zeros((2, 3)), np.zeros((4, 3)), {"k1": 0}, "k1=0"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"k1": 2.5}, "k1=2.5"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"k1": 5, "k2": 6}, "k2=6"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"k2": 0}, "k2=0"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"lambda_value": 1.5}, "lambda_value=1.5"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"lambda_value": -0.1}, "lambda_value=-0.1"),
        (np.zeros((2, 3)), np.zeros((4, 2)), {}, "same feature dimension"),
        (np.zeros((2, 3)), np.zeros((0, 3)), {}, "empty"),
        (np.zeros((2, 3), int), np.zeros((4, 3)), {}, "floating dtype"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"metric": "l1"}, "metric='l1'"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"chunk_size": 0}, "chunk_size=0"),
        (np.full((2, 3), np.nan), np.zeros((4, 3)), {}, "non-finite"),
    ],
)
def test_bad_input_raises(query, gallery, kwargs, message):
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(query, gallery, **kwargs)


def test_rerank_option_is_validated():
    with pytest.raises(ValueError, match="rerank='yes'"):
        ranking_scores_from_features(
            np.zeros((1, 2), "float32"),
            np.zeros((2, 2), "float32"),
            [1],
            [1, 2],
            [0],
            [1, 1],
            rerank="yes",
        )
