"""Tests for keras_rollback.metrics.ranking: the engine vs the library's protocol loop
(`reference_ranking_scores`, itself checked against sklearn and hand-computed cases)."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from keras_rollback.metrics import ranking
from keras_rollback.metrics import ranking_scores
from keras_rollback.metrics import ranking_scores_from_features
from keras_rollback.metrics import reference_ranking_scores
from keras_rollback.metrics import single_gallery_shot_cmc


def random_case(rng, num_queries, num_gallery, num_ids, num_cams, tie_levels=None):
    q_pids = rng.integers(1, num_ids + 1, num_queries)
    g_pids = rng.integers(-1, num_ids + 1, num_gallery)  # -1 junk, 0 distractors
    q_cams = rng.integers(0, num_cams, num_queries)
    g_cams = rng.integers(0, num_cams, num_gallery)
    if tie_levels:
        distances = rng.integers(0, tie_levels, (num_queries, num_gallery)).astype("float32")
    else:
        distances = rng.random((num_queries, num_gallery), dtype=np.float32)
    return distances, q_pids, g_pids, q_cams, g_cams


def reference_scores(distances, q_pids, g_pids, q_cams, g_cams, max_rank, ap_method, **kwargs):
    """The library's protocol loop as (cmc, per-query AP, INP, first match); NaN/-1 if none."""
    num_queries = len(q_pids)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = reference_ranking_scores(
                distances,
                q_pids,
                g_pids,
                q_cams,
                g_cams,
                max_rank=max_rank,
                ap_method=ap_method,
                **kwargs,
            )
    except ValueError as error:
        assert "No query has a valid match" in str(error)
        return (
            None,
            np.full(num_queries, np.nan),
            np.full(num_queries, np.nan),
            np.full(num_queries, -1),
        )
    return s.cmc, s.average_precision, s.inverse_negative_penalty, s.first_match_rank


def assert_matches_reference(case, max_rank=5, chunk_size=None, **kwargs):
    for ap_method in ("non_interpolated", "trapezoidal"):
        cmc, aps, inps, firsts = reference_scores(*case, max_rank, ap_method, **kwargs)
        if (firsts == -1).all():
            # No query has a valid match: the scores are undefined and the input an error.
            with pytest.raises(ValueError, match="No query has a valid match"):
                ranking_scores(
                    *case, max_rank=max_rank, ap_method=ap_method, chunk_size=chunk_size, **kwargs
                )
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = ranking_scores(
                *case, max_rank=max_rank, ap_method=ap_method, chunk_size=chunk_size, **kwargs
            )
        np.testing.assert_array_equal(scores.first_match_rank, firsts)
        # The same sums in another order: equal to float64 round-off.
        np.testing.assert_allclose(scores.average_precision, aps, rtol=0, atol=1e-12)
        np.testing.assert_allclose(scores.inverse_negative_penalty, inps, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(scores.cmc, cmc)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_queries=st.integers(1, 12),
    num_gallery=st.integers(1, 40),
    num_ids=st.integers(1, 6),
    num_cams=st.integers(1, 3),
    tie_levels=st.sampled_from([None, 2, 4, 16]),
    chunk_size=st.sampled_from([None, 1, 3]),
)
def test_fast_path_equals_loop_reference(
    seed, num_queries, num_gallery, num_ids, num_cams, tie_levels, chunk_size
):
    rng = np.random.default_rng(seed)
    case = random_case(rng, num_queries, num_gallery, num_ids, num_cams, tie_levels)
    if (case[2] == -1).all():
        return  # an all-junk gallery is rejected; tested separately
    assert_matches_reference(case, chunk_size=chunk_size)


def test_larger_random_case_with_many_ties_equals_reference():
    rng = np.random.default_rng(0)
    assert_matches_reference(random_case(rng, 30, 400, 20, 4, tie_levels=50), max_rank=20)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_signed_zeros_and_negative_ties_equal_reference(dtype):
    """The identity items are ordered by bit keys in float32 and smaller: negative and
    subnormal distances keep their order and -0.0 ties with +0.0, as in the reference's
    sort; every value is shared by many rows of one block."""
    rng = np.random.default_rng(7)
    levels = np.array([-2.0, -1e-40, -0.0, 0.0, 1e-40, 1.0, 3.0], dtype="float32")
    case = list(random_case(rng, 40, 300, 10, 3))
    case[0] = rng.choice(levels, case[0].shape).astype(dtype)
    assert_matches_reference(tuple(case), max_rank=20)
    assert_matches_reference(tuple(case), max_rank=20, chunk_size=7)


@pytest.mark.parametrize("block_distances", [1, 400, 1000])
def test_rows_gathered_in_blocks_equal_reference(monkeypatch, block_distances):
    """Candidates are gathered for blocks of rows at once: one row, 1 and 2.5 rows' worth."""
    monkeypatch.setattr(ranking, "_CANDIDATE_BLOCK", block_distances)
    rng = np.random.default_rng(1)
    assert_matches_reference(random_case(rng, 30, 400, 20, 4, tie_levels=50), max_rank=20)
    assert_matches_reference(random_case(rng, 25, 400, 8, 3), max_rank=20, chunk_size=7)


@pytest.mark.parametrize("density", [0.0, 0.01, 0.3, 1.0])
def test_word_wise_flat_nonzero_equals_numpy(density):
    mask = np.random.default_rng(0).random(8 * 123) < density
    np.testing.assert_array_equal(ranking._flat_nonzero(mask), np.flatnonzero(mask))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_distance_in_any_block_raises(monkeypatch, bad_value):
    """Each block is checked as it is read: a later block, and a junk column, included."""
    monkeypatch.setattr(ranking, "_CANDIDATE_BLOCK", 50)  # one row per block
    case = random_case(np.random.default_rng(5), 9, 50, 5, 3)
    junk_column = int(np.flatnonzero(case[2] == -1)[0])
    for row, column in ((8, 0), (3, junk_column)):
        bad = case[0].copy()
        bad[row, column] = bad_value
        with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in rows \[0, 9\)"):
            ranking_scores(bad, *case[1:])


# Both the engine and the reference loop are checked against independent computations.
SCORERS = [ranking_scores, reference_ranking_scores]


@pytest.mark.parametrize("scorer", SCORERS)
def test_non_interpolated_ap_equals_sklearn_per_query(scorer):
    rng = np.random.default_rng(1)
    distances, q_pids, g_pids, q_cams, g_cams = random_case(rng, 20, 120, 5, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = scorer(distances, q_pids, g_pids, q_cams, g_cams, ap_method="non_interpolated")
    checked = 0
    for q in range(len(q_pids)):
        valid = (g_pids != -1) & ~((g_pids == q_pids[q]) & (g_cams == q_cams[q]))
        truth = g_pids[valid] == q_pids[q]
        if not truth.any():
            assert np.isnan(scores.average_precision[q])
            continue
        expected = average_precision_score(truth, -distances[q, valid])
        np.testing.assert_allclose(scores.average_precision[q], expected, atol=1e-6)
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("scorer", SCORERS)
def test_trapezoidal_ap_hand_computed(scorer):
    # Ranked (no junk): match, negative, match, negative, match -> positions 0, 2, 4.
    # i=0, r=0: (1 + 1) / 2 = 1
    # i=1, r=2: (1/2 + 2/3) / 2 = 7/12
    # i=2, r=4: (2/4 + 3/5) / 2 = 11/20
    # AP = (1 + 7/12 + 11/20) / 3 = 32/45; non-interpolated (1 + 2/3 + 3/5) / 3 = 34/45.
    distances = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]], dtype="float32")
    args = (distances, [7], [7, 8, 7, 9, 7], [0], [1, 1, 2, 1, 1])
    trapezoid = scorer(*args, max_rank=5, ap_method="trapezoidal")
    step = scorer(*args, max_rank=5, ap_method="non_interpolated")
    assert trapezoid.mean_average_precision == pytest.approx(32 / 45)
    assert step.mean_average_precision == pytest.approx(34 / 45)
    assert step.mean_inverse_negative_penalty == pytest.approx(3 / 5)
    np.testing.assert_array_equal(step.cmc, [1, 1, 1, 1, 1])


@pytest.mark.parametrize("scorer", SCORERS)
def test_trapezoidal_ap_hand_computed_first_match_late_and_junk_removed(scorer):
    # Gallery order by distance: junk(-1), same-camera junk, negative, match, negative, match.
    # Without junk: negative, match (r=1), negative, match (r=3).
    # i=0, r=1: (0/1 + 1/2) / 2 = 1/4;  i=1, r=3: (1/3 + 2/4) / 2 = 5/12;  AP = (1/4 + 5/12) / 2 = 1/3.
    distances = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]], dtype="float32")
    args = (distances, [5], [-1, 5, 0, 5, 6, 5], [1], [2, 1, 2, 3, 1, 2])
    scores = scorer(*args, max_rank=4, ap_method="trapezoidal")
    assert scores.mean_average_precision == pytest.approx(1 / 3)
    np.testing.assert_array_equal(scores.cmc, [0, 1, 1, 1])
    assert scores.first_match_rank.tolist() == [1]


@pytest.mark.parametrize("scorer", SCORERS)
def test_queries_without_valid_match_are_skipped_counted_and_warned(scorer):
    distances = np.array([[0.1, 0.2], [0.3, 0.4]], dtype="float32")
    # Query 1's only same-id image is from its own camera: junk, so no valid match.
    with pytest.warns(UserWarning, match="1 of 2 queries have no valid match"):
        scores = scorer(distances, [1, 2], [1, 2], [0, 0], [1, 0], max_rank=2)
    assert scores.num_valid_queries == 1
    assert scores.num_skipped_queries == 1
    assert np.isnan(scores.average_precision[1])
    np.testing.assert_array_equal(scores.cmc, [1, 1])


def test_from_features_equals_from_distances():
    rng = np.random.default_rng(2)
    query = rng.normal(size=(15, 8)).astype("float32")
    gallery = rng.normal(size=(60, 8)).astype("float32")
    _, q_pids, g_pids, q_cams, g_cams = random_case(rng, 15, 60, 5, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for metric in ("euclidean", "cosine"):
            from_features = ranking_scores_from_features(
                query, gallery, q_pids, g_pids, q_cams, g_cams, metric=metric, chunk_size=4
            )
            if metric == "euclidean":
                distances = ((query[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
            else:
                qn = query / np.linalg.norm(query, axis=1, keepdims=True)
                gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
                distances = 1 - qn @ gn.T
            expected = reference_scores(
                distances, q_pids, g_pids, q_cams, g_cams, 50, "trapezoidal"
            )
            np.testing.assert_allclose(from_features.cmc, expected[0], atol=1e-6)
            np.testing.assert_allclose(from_features.average_precision, expected[1], atol=1e-6)


def test_as_logs():
    distances = np.array([[0.1, 0.5, 0.3]], dtype="float32")
    scores = ranking_scores(distances, [1], [1, 1, 2], [0], [1, 2, 1], max_rank=10)
    logs = scores.as_logs(prefix="val_")
    assert set(logs) == {"val_rank1", "val_rank5", "val_rank10", "val_mAP", "val_mINP"}
    with pytest.raises(ValueError, match="ranks"):
        scores.as_logs(ranks=(20,))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(query_pids=[1, 2]), "query_pids` has 2 entries but there are 1 queries"),
        (dict(gallery_camids=[0]), "gallery_camids` has 1 entries but there are 2 gallery"),
        (dict(distances=np.array([[0.1, np.nan]], "float32")), "non-finite"),
        (dict(distances=np.array([[0.1, np.inf]], "float32")), "non-finite"),
        (dict(distances=np.array([[1, 2]])), "floating dtype"),
        (dict(distances=np.zeros((1, 0), "float32"), gallery_pids=[], gallery_camids=[]), "empty"),
        (dict(gallery_pids=[-1, -1]), "only junk"),
        (dict(query_pids=[1.5]), "integers"),
        (dict(distances=np.zeros(2, "float32")), "2-D"),
        (dict(max_rank=0), "max_rank=0"),
        (dict(ap_method="interpolated"), "ap_method='interpolated'"),
        (dict(chunk_size=0), "chunk_size=0"),
    ],
)
def test_bad_input_raises_value_error_saying_what_is_wrong(kwargs, message):
    args = dict(
        distances=np.array([[0.1, 0.2]], "float32"),
        query_pids=[1],
        gallery_pids=[1, 2],
        query_camids=[0],
        gallery_camids=[1, 1],
    )
    options = {k: kwargs.pop(k) for k in ("max_rank", "ap_method", "chunk_size") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ranking_scores(*args.values(), **options)


def test_feature_dimension_mismatch_raises():
    with pytest.raises(ValueError, match="same feature dimension"):
        ranking_scores_from_features(
            np.zeros((1, 3), "float32"), np.zeros((2, 4), "float32"), [1], [1, 2], [0], [1, 1]
        )
    with pytest.raises(ValueError, match="metric='manhattan'"):
        ranking_scores_from_features(
            np.zeros((1, 3), "float32"),
            np.zeros((2, 3), "float32"),
            [1],
            [1, 2],
            [0],
            [1, 1],
            metric="manhattan",
        )


def reference_single_gallery_shot_cmc(
    distances, q_pids, g_pids, q_cams, g_cams, max_rank, num_repeats, seed
):
    """CUHK03 single-gallery-shot, one query and one draw at a time, from the docstring's rule."""
    keys = np.random.default_rng(seed).random((num_repeats, len(g_pids)))
    hits, valid_queries = np.zeros(max_rank), 0
    for q in range(len(q_pids)):

        def valid(g, q=q):
            return g_pids[g] != -1 and not (g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q])

        if not any(valid(g) and g_pids[g] == q_pids[q] for g in range(len(g_pids))):
            continue
        valid_queries += 1
        for r in range(num_repeats):
            chosen = {}
            for g in range(len(g_pids)):
                if valid(g) and (
                    g_pids[g] not in chosen or keys[r, g] > keys[r, chosen[g_pids[g]]]
                ):
                    chosen[g_pids[g]] = g
            ranked = sorted(chosen.values(), key=lambda g: (distances[q][g], g))
            position = [g_pids[g] for g in ranked].index(q_pids[q])
            hits[position:] += 1
    return hits / (valid_queries * num_repeats)


@pytest.mark.parametrize("tie_levels", [None, 3])
def test_single_gallery_shot_cmc_equals_loop_reference(tie_levels):
    rng = np.random.default_rng(3)
    case = random_case(rng, 10, 60, 8, 2, tie_levels=tie_levels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmc = single_gallery_shot_cmc(*case, max_rank=8, num_repeats=4, seed=7, chunk_size=4)
    expected = reference_single_gallery_shot_cmc(*case, max_rank=8, num_repeats=4, seed=7)
    np.testing.assert_allclose(cmc, expected, atol=1e-12)


def test_single_gallery_shot_cmc_validates_num_repeats():
    with pytest.raises(ValueError, match="num_repeats=0"):
        single_gallery_shot_cmc(
            np.zeros((1, 2), "float32"), [1], [1, 2], [0], [1, 1], num_repeats=0
        )


def test_backend_tensor_distances_give_the_same_scores():
    import keras

    rng = np.random.default_rng(4)
    case = random_case(rng, 9, 50, 5, 3, tie_levels=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_host = ranking_scores(*case, chunk_size=4)
        on_device = ranking_scores(keras.ops.convert_to_tensor(case[0]), *case[1:], chunk_size=4)
    np.testing.assert_array_equal(on_device.first_match_rank, on_host.first_match_rank)
    np.testing.assert_allclose(on_device.average_precision, on_host.average_precision)
    junk_column = int(np.flatnonzero(case[2] == -1)[0])
    for bad_column in (junk_column, int(np.flatnonzero(case[2] != -1)[0])):
        bad = case[0].copy()
        bad[5, bad_column] = np.nan
        for distances in (bad, keras.ops.convert_to_tensor(bad)):
            with pytest.raises(
                ValueError, match=r"non-finite values \(NaN or inf\) in rows \[4, 8\)"
            ):
                ranking_scores(distances, *case[1:], chunk_size=4)


@pytest.mark.parametrize("tie_levels", [None, 7])
def test_huge_identities_equal_reference(tie_levels):
    # Identities of 2,000 and 1,000 gallery images (vehicle ReID, tracklets) beside small
    # ones; every query of the big identities ranks thousands of true matches and junk.
    rng = np.random.default_rng(5)
    g_pids = np.concatenate([np.full(2000, 1), np.full(1000, 2), rng.integers(-1, 30, 1000)])
    rng.shuffle(g_pids)
    q_pids = np.array([1, 2, 1, 3, 2, 1, 4, 5])
    q_cams = rng.integers(0, 4, len(q_pids))
    g_cams = rng.integers(0, 4, len(g_pids))
    if tie_levels:
        distances = rng.integers(0, tie_levels, (len(q_pids), len(g_pids))).astype("float32")
    else:
        distances = rng.random((len(q_pids), len(g_pids)), dtype=np.float32)
    case = (distances, q_pids, g_pids, q_cams, g_cams)
    assert_matches_reference(case, max_rank=50, chunk_size=3)


def test_ties_across_identities_use_the_gallery_order():
    # Negatives (id 9) and junk at exactly a true match's distance, before and after it.
    distances = np.array([[0.5, 0.5, 0.5, 0.5, 0.5, 0.2, 0.5]], dtype="float32")
    g_pids = [9, 1, 9, 1, 1, 9, 9]
    g_cams = [0, 1, 0, 0, 2, 0, 0]  # item 3 is junk (query camera 0)
    # Valid ranked list: 5 (0.2), then the 0.5 tie in gallery order: 0, 1, 2, 4, 6.
    for scorer in SCORERS:
        scores = scorer(distances, [1], g_pids, [0], g_cams, max_rank=3)
        assert scores.first_match_rank.tolist() == [2]
        expected_ap = (1 / 3 + 2 / 5) / 2  # matches at positions 2 and 4, non-interpolated
        step = scorer(distances, [1], g_pids, [0], g_cams, max_rank=3, ap_method="non_interpolated")
        assert step.mean_average_precision == pytest.approx(expected_ap, abs=1e-15)


def test_float64_ties_are_ranked_in_float64():
    # The reproducer: distances that only float64 tells apart. Rounded to float32,
    # the true match (item 2, distance 1.0) would tie with the two before it and rank third.
    distances = np.array([[1 + 1e-12, 1 + 2e-12, 1.0, 5.0]])
    for scorer in SCORERS:
        scores = scorer(distances, [1], [2, 3, 1, 4], [0], [1, 1, 1, 1], max_rank=3)
        assert scores.first_match_rank.tolist() == [0]
        assert scores.mean_average_precision == 1.0


def test_float64_random_ties_equal_reference_and_sklearn():
    # Distinct in float64, tied in float32 for most pairs.
    rng = np.random.default_rng(6)
    case = list(random_case(rng, 12, 300, 6, 3, tie_levels=5))
    case[0] = (case[0] + 1).astype(np.float64) + rng.random(case[0].shape) * 1e-9
    assert len(np.unique(case[0].astype(np.float32))) == 5
    assert_matches_reference(tuple(case), max_rank=20, chunk_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = ranking_scores(*case, ap_method="non_interpolated")
    distances, q_pids, g_pids, q_cams, g_cams = case
    q = int(np.flatnonzero(scores.first_match_rank >= 0)[0])
    valid = (g_pids != -1) & ~((g_pids == q_pids[q]) & (g_cams == q_cams[q]))
    # sklearn ranks tied scores together; with float64 there are no ties left in this row.
    row = distances[q, valid]
    assert len(np.unique(row)) == len(row)
    expected = average_precision_score(g_pids[valid] == q_pids[q], -row)
    assert scores.average_precision[q] == pytest.approx(expected, abs=1e-12)


def test_float64_features_are_ranked_in_float64():
    # Gallery points 1e-9 apart along one axis: float32 features would collapse them.
    query = np.array([[0.0, 0.0]])
    gallery = np.array([[1.0 + 2e-9, 0.0], [1.0 + 1e-9, 0.0], [1.0, 0.0]])
    scores = ranking_scores_from_features(
        query, gallery, [1], [2, 3, 1], [0], [1, 1, 1], metric="euclidean", max_rank=1
    )
    assert scores.first_match_rank.tolist() == [0]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_gallery=st.integers(2, 40),
    num_ids=st.integers(1, 6),
    tie_levels=st.sampled_from([None, 2, 4]),
    chunk_size=st.sampled_from([None, 1, 3]),
)
def test_without_cameras_equals_reference(seed, num_gallery, num_ids, tie_levels, chunk_size):
    # Retrieval style: some queries are gallery images (only themselves are junk).
    rng = np.random.default_rng(seed)
    distances, _, g_pids, _, _ = random_case(rng, 1, num_gallery, num_ids, 1, tie_levels)
    num_queries = int(rng.integers(1, num_gallery + 1))
    own = rng.choice(num_gallery, num_queries, replace=False)
    own[rng.random(num_queries) < 0.3] = -1  # queries that are not in the gallery
    q_pids = np.where(own >= 0, g_pids[own], rng.integers(1, num_ids + 1, num_queries))
    own[q_pids == -1] = -1
    q_pids[q_pids == -1] = 1
    distances = random_case(rng, num_queries, num_gallery, num_ids, 1, tie_levels)[0]
    if (g_pids == -1).all():
        return
    case = (distances, q_pids, g_pids, None, None)
    assert_matches_reference(case, chunk_size=chunk_size, query_gallery_indices=own)


def test_without_cameras_every_image_queries_the_others():
    # Four images of two identities; each queries the other three.
    pids = np.array([1, 1, 2, 2])
    distances = np.array(
        [[0.0, 0.3, 0.1, 0.2], [0.3, 0.0, 0.4, 0.5], [0.1, 0.4, 0.0, 0.2], [0.2, 0.5, 0.2, 0.0]]
    )
    for scorer in SCORERS:
        scores = scorer(
            distances, pids, pids, None, None, max_rank=3, query_gallery_indices=np.arange(4)
        )
        # Query 0: 2 (0.1), 3 (0.2), 1 (0.3) -> match at 2; query 1: 0 first -> 0;
        # query 2: 0 (0.1), 3 (0.2) -> 1; query 3: 0 (0.2) then 2 (0.2, later index) -> 1.
        assert scores.first_match_rank.tolist() == [2, 0, 1, 1]
        # Without query_gallery_indices each query finds itself first (distance 0).
        itself = scorer(distances, pids, pids, None, None, max_rank=1)
        assert itself.first_match_rank.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(query_camids=None), "for neither"),
        (dict(query_gallery_indices=[2]), r"in \[0, 2\) or -1"),
        (dict(query_gallery_indices=[1]), "points to a gallery item with id 2"),
        (dict(query_gallery_indices=[0, 1]), "has 2 entries but there are 1 queries"),
        (dict(verbose=2), "verbose=2"),
    ],
)
def test_bad_camera_and_query_index_options_raise(kwargs, message):
    args = dict(
        distances=np.array([[0.1, 0.2]], "float32"),
        query_pids=[1],
        gallery_pids=[1, 2],
        query_camids=[0],
        gallery_camids=[1, 1],
    )
    options = {k: kwargs.pop(k) for k in ("query_gallery_indices", "verbose") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ranking_scores(*args.values(), **options)


def test_progress_bar_on_request(capsys):
    distances = np.array([[0.1, 0.2]], "float32")
    ranking_scores(distances, [1], [1, 2], [0], [1, 1], verbose=1)
    assert "query" in capsys.readouterr().out
