"""Tests for keras_rollback.metrics.distance."""

import numpy as np
import pytest

from keras_rollback.metrics import pairwise_distance
from keras_rollback.metrics.distance import automatic_chunk_size


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_pairwise_distance_matches_numpy(chunk_size):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(7, 5)).astype("float32")
    gallery = rng.normal(size=(9, 5)).astype("float32")
    euclidean = pairwise_distance(query, gallery, chunk_size=chunk_size)
    np.testing.assert_allclose(
        euclidean, ((query[:, None] - gallery[None]) ** 2).sum(-1), rtol=1e-5, atol=1e-5
    )
    cosine = pairwise_distance(query, gallery, metric="cosine", chunk_size=chunk_size)
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine, 1 - qn @ gn.T, atol=1e-5)
    assert euclidean.dtype == np.float32 and euclidean.shape == (7, 9)


def test_automatic_chunk_size_is_a_power_of_two_of_at_most_4m_distances():
    assert automatic_chunk_size(3368, 15913) == 256
    assert automatic_chunk_size(5, 10) == 8
    assert automatic_chunk_size(3, 10**8) == 1


@pytest.mark.parametrize(
    "query, gallery, kwargs, message",
    [
        (np.zeros((2, 3)), np.zeros((4, 2)), {}, "same feature dimension"),
        (np.zeros((2, 3)), np.zeros((0, 3)), {}, "empty"),
        (np.zeros(3), np.zeros((4, 3)), {}, "2-D"),
        (np.zeros((2, 3), int), np.zeros((4, 3)), {}, "floating dtype"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"metric": "l1"}, "metric='l1'"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"chunk_size": -1}, "chunk_size=-1"),
    ],
)
def test_bad_input_raises(query, gallery, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pairwise_distance(query, gallery, **kwargs)
