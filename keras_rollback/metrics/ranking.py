"""CMC, mAP and mINP for person re-identification: an exact engine that never argsorts a row.

CMC, AP and INP only need, for every true match of a query, its 0-based position among
the query's valid gallery items: the number of valid items ranked before it. The engine
counts exactly that, one query row at a time, in numpy on the host, in the distances'
own dtype (float64 stays float64 on every backend):

- the query's identity items (its true matches and its junk: a few dozen, or thousands
  for a vehicle or a tracklet) are put in ranking order (distance, then gallery index)
  with one stable argsort per chunk of (row, distance) keys: O(P log P) for P identity
  items;
- the rows are read in blocks of about 1M distances (4 MB), so that each distance comes
  from memory once: while a block is in the cache it is checked finite, compared with each
  row's last true match, and the items no farther than it located (the only ones that can
  precede a true match; for a good model a small part of the gallery), a few numpy calls
  per block rather than per row, the locating done word by word (8 items at a time, then
  the items of the words holding one); each row's kept distances are sorted (a value sort,
  no indices) and a `searchsorted` of the true matches' distances gives, for each true
  match, the items strictly closer;
- the identity's own items closer than a true match are known from the first step and
  subtracted (junk is never counted); an item of another identity at exactly a true
  match's distance is ranked before it when its gallery index is lower: such ties are
  rare, detected by comparing the tie counts, and counted exactly where they occur.

The cost per query is one pass over its row plus a sort of its c items no farther than
its hardest true match (c log c), plus the identity items: no argsort of a row, no
pairwise comparison within an identity, whatever the sizes of the identities. Only one
chunk of rows is read at a time, so distances computed from features are never held in
full.
"""

import keras
import numpy as np
from keras import ops

from keras_rollback.fit_verbosity import fit_verbosity
from keras_rollback.metrics import _protocol
from keras_rollback.metrics import _validation
from keras_rollback.metrics import distance as distance_lib
from keras_rollback.metrics import reranking

AP_METHODS = _protocol.AP_METHODS
# About 32M distances per chunk (128 MB in float32): each matmul of a chunk against the
# gallery reads the whole gallery, so larger chunks read it fewer times; the engine's
# temporaries are a fraction of a chunk.
_DISTANCES_PER_CHUNK = 2**25
# Distances checked and compared with their rows' thresholds at once (a few numpy calls for
# a block of rows rather than a few per row): 4 MB of float32, so that the block is read from
# memory once and stays in the cache for the comparison and the gathering.
_CANDIDATE_BLOCK = 2**20
# Above this many distances a call shows a progress bar unless verbose=0.
_PROGRESS_BAR_DISTANCES = 2**28


def _check_finite(values, name, start, stop):
    """Raises unless every distance of `values` (within rows [start, stop) of `name`) is
    finite."""
    if not np.isfinite(values).all():
        raise ValueError(
            f"`{name}` contains non-finite values (NaN or inf) in rows [{start}, {stop}). "
            "Distances must be finite."
        )


def _runs(rows, values):
    """For sorted `(rows, values)`: the index of the first item of each item's row and of
    its run of equal (row, value), and the run number of each item."""
    index = np.arange(len(rows))
    new_row = np.ones(len(rows), dtype=bool)
    new_row[1:] = rows[1:] != rows[:-1]
    new_run = new_row.copy()
    new_run[1:] |= values[1:] != values[:-1]
    row_first = np.maximum.accumulate(np.where(new_row, index, 0))
    run_first = np.maximum.accumulate(np.where(new_run, index, 0))
    return row_first, run_first, np.cumsum(new_run) - 1


def _ranking_order(rows, values):
    """The order of items by row, then distance, then gallery index, for items grouped by
    row and in gallery order within each row (as `Protocol.identity_items` gives them)."""
    if values.dtype.itemsize > 4:
        # No room for the row beside a float64 in 64 bits. `lexsort` is stable, so the
        # gallery order stays the last key.
        return np.lexsort((values, rows))
    # One uint64 key per item: the row above the float32 bits made order-preserving
    # (negatives' bits inverted, the sign bit set on the others; -0.0 + 0.0 is +0.0, which
    # must tie with it). The rows come in order, so a stable argsort (timsort: it sorts
    # within short runs and finds the runs already in order) takes 1 ms where a `lexsort`
    # of (gallery index, distance, row) took 12 ms on the hard Market-1501 problem.
    bits = np.add(values, 0.0, dtype=np.float32).view(np.uint32)
    keys = bits ^ ((bits >> 31) * np.uint32(0x7FFFFFFF) + np.uint32(0x80000000))
    return np.argsort((rows.astype(np.uint64) << 32) | keys, kind="stable")


def _other_identities_tied_ahead(tied_columns, tied_values, identity_columns, values, columns):
    """For true matches at (`values`, `columns`), sorted: how many items of other identities
    at exactly the same distance have a lower gallery index (ranked before them)."""
    other = ~np.isin(tied_columns, identity_columns)
    all_values = np.concatenate([tied_values[other], values])
    all_columns = np.concatenate([tied_columns[other], columns])
    is_other = np.arange(len(all_values)) < int(other.sum())
    order = np.lexsort((all_columns, all_values))
    is_other = is_other[order]
    others_before: np.ndarray = np.cumsum(is_other) - is_other
    _, run_first, _ = _runs(np.zeros(len(order)), all_values[order])
    return (others_before - others_before[run_first])[~is_other]


def _flat_nonzero(mask):
    """`np.flatnonzero` of a 1-D bool array whose length is a multiple of 8.

    It first finds the 8-byte words holding a set item, then the items within them: at the
    few percent of set items of a ranking, half the time of one scan of every item.
    """
    words = mask.view(np.uint64)
    nonzero_words = np.flatnonzero(words != 0)
    within = np.flatnonzero(words[nonzero_words].view(np.bool_))
    return nonzero_words[within >> 3] * 8 + (within & 7)


def _candidates(block, thresholds, is_kept):
    """The distances of each row of `block` no farther than the row's threshold.

    Only kept columns count. Returns `(values, row_bounds)`: the distances, row by row in
    gallery order, and where each row's items start (`len(block) + 1` bounds).
    """
    padded = np.empty(-(-block.size // 8) * 8, dtype=bool)
    padded[block.size :] = False
    mask = padded[: block.size].reshape(block.shape)
    np.less_equal(block, thresholds[:, None], out=mask)
    if is_kept is not None:
        mask &= is_kept
    flat = _flat_nonzero(padded)
    row_bounds = np.searchsorted(flat, np.arange(len(block) + 1) * block.shape[1])
    return np.ravel(block)[flat], row_bounds


def _kept_items_no_farther(row, threshold, is_kept):
    """`(columns, distances)` of the kept items of one row no farther than `threshold`."""
    mask = row <= threshold
    if is_kept is not None:
        mask &= is_kept
    columns = np.flatnonzero(mask)
    return columns, row[columns]


def _true_match_positions(chunk, protocol, start, name="distances"):
    """Ranks the true matches of the queries in a chunk of rows of distances.

    Args:
        chunk: numpy array (rows, n_gallery), finite, rows [start, start + rows) of the
            query x gallery distances.
        protocol: the problem's `_protocol.Protocol`.
        start: index of the chunk's first query.
        name: what the distances are, for the error raised when one is not finite.

    Returns:
        `(rows, positions, goods_ahead)`, int64 arrays with one entry per true match,
        grouped by row in ranking order: the match's row in the chunk, its 0-based position
        among the row's valid items, and the number of true matches ranked before it.
    """
    num_rows = len(chunk)
    rows, columns, is_good = protocol.identity_items(start, start + num_rows)
    values = chunk[rows, columns]
    order = _ranking_order(rows, values)
    rows, columns, is_good, values = rows[order], columns[order], is_good[order], values[order]
    row_first, run_first, run = _runs(rows, values)
    # Items of the query's own identity strictly closer than each item, junk included,
    # and at exactly its distance (its run), itself included.
    identity_closer = run_first - row_first
    identity_tied = np.bincount(run)[run]
    identity_bounds = np.searchsorted(rows, np.arange(num_rows + 1))

    good_rows, good_columns, good_values = rows[is_good], columns[is_good], values[is_good]
    good_identity_tied = identity_tied[is_good]
    bounds = np.searchsorted(good_rows, np.arange(num_rows + 1))
    goods_ahead = np.arange(len(good_rows)) - bounds[good_rows]
    closer = np.zeros(len(good_rows), dtype=np.int64)
    has_other_tie = np.zeros(len(good_rows), dtype=bool)
    # Each row keeps the items no farther than its last true match: the only ones that can
    # precede one (a row without a true match keeps none).
    row_thresholds = np.full(num_rows, -np.inf, dtype=chunk.dtype)
    has_goods = np.diff(bounds) > 0
    row_thresholds[has_goods] = good_values[bounds[1:][has_goods] - 1]
    block_rows = max(1, _CANDIDATE_BLOCK // max(1, chunk.shape[1]))
    match_bounds = bounds.tolist()
    for block_start in range(0, num_rows, block_rows):
        block_stop = min(block_start + block_rows, num_rows)
        block = chunk[block_start:block_stop]
        # Checked while the block is in the cache that the comparison reads it from.
        _check_finite(block, name, start, start + num_rows)
        candidates, row_bounds = _candidates(
            block, row_thresholds[block_start:block_stop], protocol.is_kept
        )
        # Python ints in the loop over rows: indexing numpy arrays by scalars costs more.
        candidate_bounds = row_bounds.tolist()
        for offset in np.flatnonzero(has_goods[block_start:block_stop]).tolist():
            first, last = match_bounds[block_start + offset], match_bounds[block_start + offset + 1]
            row_candidates = candidates[candidate_bounds[offset] : candidate_bounds[offset + 1]]
            row_candidates.sort()  # In place: each row's stretch of `candidates` is sorted.
            closer[first:last] = row_candidates.searchsorted(good_values[first:last], "left")
        # A true match's run of equal distances starts at `closer` and holds its identity's
        # items at that distance; one more equal item after them is another identity's.
        first, last = bounds[block_start], bounds[block_stop]
        block_row = good_rows[first:last] - block_start
        after_run = row_bounds[block_row] + closer[first:last] + good_identity_tied[first:last]
        inside = after_run < row_bounds[block_row + 1]
        has_other_tie[first:last][inside] = (
            candidates[after_run[inside]] == good_values[first:last][inside]
        )
    # Items of other identities at exactly a true match's distance (rare): found where a
    # match's ties outnumber its own identity's, and ranked by gallery index.
    for row in np.unique(good_rows[has_other_tie]):
        first, last = bounds[row], bounds[row + 1]
        thresholds = good_values[first:last]
        kept_columns, kept_values = _kept_items_no_farther(
            chunk[row], thresholds[-1], protocol.is_kept
        )
        is_tied = np.isin(kept_values, thresholds)
        closer[first:last] += _other_identities_tied_ahead(
            kept_columns[is_tied],
            kept_values[is_tied],
            columns[identity_bounds[row] : identity_bounds[row + 1]],
            thresholds,
            good_columns[first:last],
        )
    positions = closer - identity_closer[is_good] + goods_ahead
    return good_rows, positions, goods_ahead


def _per_query_scores(rows, positions, goods_ahead, num_rows, ap_method):
    """AP, INP and first-match position per query from its true matches' positions."""
    num_good = np.bincount(rows, minlength=num_rows)
    valid = num_good > 0
    position = positions.astype(np.float64)
    rank_among_good = goods_ahead.astype(np.float64)
    precision = (rank_among_good + 1.0) / (position + 1.0)
    if ap_method == "trapezoidal":
        previous_precision = np.where(
            position > 0, rank_among_good / np.maximum(position, 1.0), 1.0
        )
        precision = (previous_precision + precision) / 2.0
    average_precision = np.full(num_rows, np.nan)
    inverse_negative_penalty = np.full(num_rows, np.nan)
    first_match_rank = np.full(num_rows, -1, dtype=np.int64)
    # The matches of a row are in ranking order: its first and last entries.
    last = np.cumsum(num_good)[valid] - 1
    first = last - num_good[valid] + 1
    average_precision[valid] = (
        np.bincount(rows, weights=precision, minlength=num_rows)[valid] / num_good[valid]
    )
    inverse_negative_penalty[valid] = num_good[valid] / (positions[last] + 1.0)
    first_match_rank[valid] = positions[first]
    return average_precision, inverse_negative_penalty, first_match_rank


def _evaluate(chunks, protocol, *, name, max_rank, ap_method, verbose):
    """Scores `(start, stop, numpy distances)` chunks, checking that they are finite (`name`
    says what they are in the error); returns `RankingScores`."""
    num_queries = protocol.num_queries
    average_precision = np.full(num_queries, np.nan)
    inverse_negative_penalty = np.full(num_queries, np.nan)
    first_match_rank = np.full(num_queries, -1, dtype=np.int64)
    # A redrawn bar on a terminal, one line at the end in a file (fit_verbosity).
    progress = (
        keras.utils.Progbar(num_queries, unit_name="query", verbose=fit_verbosity())
        if verbose
        else None
    )
    for start, stop, chunk in chunks:
        rows, positions, goods_ahead = _true_match_positions(chunk, protocol, start, name)
        (
            average_precision[start:stop],
            inverse_negative_penalty[start:stop],
            first_match_rank[start:stop],
        ) = _per_query_scores(rows, positions, goods_ahead, stop - start, ap_method)
        if progress is not None:
            progress.update(stop)
    return _protocol.aggregate(
        average_precision,
        inverse_negative_penalty,
        first_match_rank,
        protocol.query_pids,
        max_rank=max_rank,
        ap_method=ap_method,
        stacklevel=4,
    )


def _show_progress(verbose, num_queries, num_gallery):
    if verbose not in ("auto", 0, 1) or isinstance(verbose, bool):
        raise ValueError(f"Received: verbose={verbose!r}. Expected 'auto', 0 or 1.")
    if verbose == "auto":
        return num_queries * num_gallery > _PROGRESS_BAR_DISTANCES
    return bool(verbose)


def _matrix_chunks(distances, chunk_size):
    """Yields `(start, stop, numpy rows)` of a distance matrix (array or tensor)."""
    num_queries = _validation.shape_of(distances)[0]
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        yield start, stop, _validation.to_numpy(distances[start:stop])


def _chunk_size(chunk_size, num_queries, num_gallery):
    if chunk_size is None:
        return distance_lib.automatic_chunk_size(
            num_queries, num_gallery, elements=_DISTANCES_PER_CHUNK
        )
    return chunk_size


def ranking_scores(
    distances,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    *,
    max_rank=50,
    ap_method="trapezoidal",
    query_gallery_indices=None,
    chunk_size=None,
    verbose="auto",
):
    """CMC, mAP and mINP of a query x gallery distance matrix under the Market-1501 protocol.

    Parameters
    ----------
    distances : array-like or tensor of shape (n_queries, n_gallery)
        Floating, finite distances; smaller is more similar. Ranked in their own dtype:
        float64 stays float64 on every backend. A backend tensor is read one chunk of rows
        at a time.
    query_pids, gallery_pids : array-like of int, shapes (n_queries,) and (n_gallery,)
        Person ids. Gallery id -1 is junk; id 0 (distractors) is an ordinary negative.
    query_camids, gallery_camids : array-like of int, shapes (n_queries,) and (n_gallery,), or None
        Camera ids. ``None`` for both: the dataset has no cameras, and only id -1 and the
        query image itself (`query_gallery_indices`) are junk.
    max_rank : int, default=50
        Length of the returned CMC curve.
    ap_method : {"trapezoidal", "non_interpolated"}, default="trapezoidal"
        How AP integrates the precision-recall curve; see Notes.
    query_gallery_indices : array-like of int, shape (n_queries,), default=None
        The gallery position of each query image, -1 for a query that is not in the
        gallery; that gallery item is junk for its query. For retrieval benchmarks whose
        queries are gallery images (e.g. every image queries all the others:
        ``query_gallery_indices=np.arange(n)``). Each must point to an item of the query's
        identity. ``None``: no query is in the gallery.
    chunk_size : int or None, default=None
        Queries evaluated at once; ``None`` picks about 32M distances per chunk (128 MB
        in float32), which bounds the memory whatever the number of queries.
    verbose : {"auto", 0, 1}, default="auto"
        1 shows a progress bar over the queries; ``"auto"`` shows it above 2**28 distances.

    Returns
    -------
    scores : RankingScores
        ``cmc`` of shape (max_rank,), ``mean_average_precision``,
        ``mean_inverse_negative_penalty``, per-query values and ``num_valid_queries``.

    Raises
    ------
    ValueError
        If lengths do not match the distance matrix, ids are not integers, only one of the
        camera id arrays is given, a query index is out of range or points to another
        identity, distances are not floating or not finite, the gallery is empty, no query
        has a valid match, or an option is out of range.

    Warns
    -----
    UserWarning
        When some queries have no valid match; they are skipped and counted.

    See Also
    --------
    reference_ranking_scores : the same protocol, one query at a time, as a plain loop.

    Notes
    -----
    The protocol is the official Market-1501 one (Zheng et al., ICCV 2015), also used for
    DukeMTMC-reID, CUHK03 (767/700 split) and MSMT17. For a query with id ``p`` and camera
    ``c`` the gallery is ranked by increasing distance, ties by gallery index (a stable
    sort), after removing the *junk*: every item with id -1, every item with id ``p`` and
    camera ``c``, and the query image itself when `query_gallery_indices` gives it. The
    *true matches* are the remaining items with id ``p``; everything else, id-0
    distractors included, is a negative. A query with no true match is skipped. With the
    true matches at 0-based positions ``r_0 < r_1 < ...`` of the cleaned list (``n`` of
    them):

    - CMC: ``cmc[k] = mean over queries of [r_0 <= k]``.
    - ``ap_method="non_interpolated"``: ``AP = mean_i (i + 1) / (r_i + 1)``, the area under
      the step precision-recall curve, as torchreid, fast-reid and
      ``sklearn.metrics.average_precision_score`` compute it.
    - ``ap_method="trapezoidal"``: ``AP = sum_i (p_{i-1} + p_i) / (2 n)`` with
      ``p_i = (i + 1) / (r_i + 1)`` and ``p_{i-1} = i / r_i`` (1 when ``r_i = 0``): the
      trapezoid rule of the official Market-1501 MATLAB code used by the rolling-back
      paper's authors. It is never above the non-interpolated AP: it averages each match's
      precision with the lower precision just before it (``i / r_i``); the gap is large
      when the matches are ranked low (e.g. 24.3 vs 26.0 mAP on weak features) and small
      for a good model.
    - mINP: ``INP = n / (r_{n-1} + 1)``, how deep the hardest true match lies
      (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook",
      TPAMI 2021).

    The engine counts, for each true match, the valid items ranked before it (see the
    module docstring): its cost is linear in the gallery whatever the identity sizes, and
    the result is exact, ties included.

    References
    ----------
    .. [1] L. Zheng et al. "Scalable Person Re-identification: A Benchmark." ICCV 2015.
    .. [2] M. Ye et al. "Deep Learning for Person Re-identification: A Survey and
       Outlook." TPAMI 2021.

    Examples
    --------
    >>> import numpy as np
    >>> distances = np.array([[0.1, 0.5, 0.3]], dtype="float32")
    >>> scores = ranking_scores(distances, [1], [1, 1, 2], [0], [1, 2, 1], max_rank=3,
    ...                         ap_method="non_interpolated")
    >>> scores.cmc.tolist(), scores.mean_average_precision
    ([1.0, 1.0, 1.0], 0.8333333333333333)

    Without cameras, every image querying all the others:

    >>> pids = [1, 1, 2]
    >>> distances = np.array([[0.0, 0.2, 0.1], [0.2, 0.0, 0.3]])
    >>> ranking_scores(distances, pids[:2], pids, None, None, max_rank=1,
    ...                query_gallery_indices=[0, 1]).cmc.tolist()
    [0.5]
    """
    _protocol.check_options(max_rank, ap_method, chunk_size)
    distances, protocol = _protocol.setup_from_distances(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, query_gallery_indices
    )
    num_queries, num_gallery = protocol.num_queries, protocol.num_gallery
    verbose = _show_progress(verbose, num_queries, num_gallery)
    chunks = _matrix_chunks(distances, _chunk_size(chunk_size, num_queries, num_gallery))
    return _evaluate(
        chunks,
        protocol,
        name="distances",
        max_rank=max_rank,
        ap_method=ap_method,
        verbose=verbose,
    )


def ranking_scores_from_features(
    query_features,
    gallery_features,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    *,
    metric="euclidean",
    max_rank=50,
    ap_method="trapezoidal",
    query_gallery_indices=None,
    chunk_size=None,
    rerank=False,
    verbose="auto",
):
    """CMC, mAP and mINP from query and gallery features under the Market-1501 protocol.

    The distances are computed chunk by chunk on the active backend and never held in
    full: a large benchmark (MSMT17: 11,659 x 82,161) needs no 4 GB distance matrix, and
    the memory above the features is about one copy of the gallery plus a few chunks.

    Parameters
    ----------
    query_features : array-like or tensor of shape (n_queries, n_features)
    gallery_features : array-like or tensor of shape (n_gallery, n_features)
    query_pids, gallery_pids, query_camids, gallery_camids : array-like of int
        As in `ranking_scores` (camera ids may be None).
    metric : {"euclidean", "cosine"}, default="euclidean"
        Squared L2 distance or ``1 - cosine similarity`` (see `pairwise_distance`).
    max_rank, ap_method, query_gallery_indices, chunk_size, verbose
        As in `ranking_scores`.
    rerank : bool, default=False
        Rank by the k-reciprocal re-ranked distance (`k_reciprocal_rerank` with the paper's
        ``k1=20, k2=6, lambda_value=0.3`` and this `metric`) instead of the plain one. For
        other settings, pass `k_reciprocal_rerank`'s result to `ranking_scores`.

    Returns
    -------
    scores : RankingScores

    Raises
    ------
    ValueError
        As `ranking_scores`, and when the feature dimensions differ, `metric` is unknown or
        `rerank` is not a bool.

    Notes
    -----
    Same protocol and AP definitions as `ranking_scores`. The distances are computed in
    float64 in numpy when either features are float64 (Keras' ops do not keep float64 on
    every backend), in float32 on the backend otherwise. The rolling-back authors score by the dot product of
    L2-normalised features, which ranks exactly like both metrics here. With
    ``rerank=True`` every gallery image, junk (id -1) included, takes part in the
    re-ranking (as in the authors' and torchreid's evaluation) before the junk is dropped
    from the ranking, and the query x gallery matrix is held in full (float32).

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0]], dtype="float32")
    >>> g = np.array([[1.0, 0.1], [0.0, 1.0]], dtype="float32")
    >>> ranking_scores_from_features(q, g, [3], [3, 4], [0], [1, 1], max_rank=1).cmc
    array([1.])
    """
    _protocol.check_options(max_rank, ap_method, chunk_size)
    if not isinstance(rerank, (bool, np.bool_)):
        raise ValueError(f"Received: rerank={rerank!r}. Expected True or False.")
    query_features = _validation.as_matrix(query_features)
    gallery_features = _validation.as_matrix(gallery_features)
    query_shape, gallery_shape = distance_lib._check_features(
        query_features, gallery_features, metric
    )
    protocol = _protocol.setup(
        query_shape[0],
        gallery_shape[0],
        query_pids,
        gallery_pids,
        query_camids,
        gallery_camids,
        query_gallery_indices,
    )
    verbose = _show_progress(verbose, query_shape[0], gallery_shape[0])
    if rerank:
        distances = reranking.k_reciprocal_rerank(query_features, gallery_features, metric=metric)
        reranked = _matrix_chunks(
            distances, _chunk_size(chunk_size, query_shape[0], gallery_shape[0])
        )
        return _evaluate(
            reranked,
            protocol,
            name="re-ranked distances",
            max_rank=max_rank,
            ap_method=ap_method,
            verbose=verbose,
        )
    # The junk (id -1) never needs a distance.
    kept_columns, protocol = protocol.without_junk_columns()
    if kept_columns is not None:
        gallery_features = (
            gallery_features[kept_columns]
            if isinstance(gallery_features, np.ndarray)
            else ops.take(gallery_features, kept_columns, axis=0)
        )
    chunk_size = _chunk_size(chunk_size, query_shape[0], len(protocol.gallery_pids))

    chunks = (
        (start, stop, _validation.to_numpy(chunk))
        for start, stop, chunk in distance_lib.iter_distance_chunks(
            query_features, gallery_features, metric=metric, chunk_size=chunk_size
        )
    )
    return _evaluate(
        chunks,
        protocol,
        name="distances from the features",
        max_rank=max_rank,
        ap_method=ap_method,
        verbose=verbose,
    )


def _is_ahead(distance_a, index_a, distance_b, index_b):
    """Whether item a is ranked before item b: closer, or equally close with a lower index."""
    return (distance_a < distance_b) | ((distance_a == distance_b) & (index_a < index_b))


def single_gallery_shot_cmc(
    distances,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    *,
    max_rank=50,
    num_repeats=10,
    seed=0,
    chunk_size=None,
):
    """CMC under the CUHK03 single-gallery-shot protocol (one gallery image per identity).

    Parameters
    ----------
    distances : array-like or tensor of shape (n_queries, n_gallery)
        Floating, finite distances; smaller is more similar.
    query_pids, gallery_pids, query_camids, gallery_camids : array-like of int
        As in `ranking_scores`; gallery id -1 is junk.
    max_rank : int, default=50
        Length of the returned CMC curve.
    num_repeats : int, default=10
        Random gallery draws averaged.
    seed : int, default=0
        Seed of the draws (`numpy.random.default_rng`).
    chunk_size : int or None, default=None
        As in `ranking_scores`.

    Returns
    -------
    cmc : ndarray of shape (max_rank,), float64
        ``cmc[k]``: fraction of (query, draw) pairs whose true match is within the top k+1,
        over the queries with a valid match.

    Raises
    ------
    ValueError
        As `ranking_scores`, and when `num_repeats` is not a positive integer.

    Warns
    -----
    UserWarning
        When some queries have no valid match; they are skipped and counted.

    Notes
    -----
    The protocol of the original CUHK03 benchmark (Li et al., CVPR 2014) as open-reid and
    torchreid implement it: junk is removed as in the Market-1501 protocol (id -1, and the
    query's identity seen by the query's camera); then each gallery identity is
    represented by a single random image, and the query's rank is the position of its
    identity's image among these representatives (ties by gallery order). Draw ``r`` takes
    ``keys = numpy.random.default_rng(seed).random((num_repeats, n_gallery))[r]`` and keeps,
    for every identity, its valid image with the largest key: the draw is shared by all
    queries (torchreid draws per query; the expected CMC is the same). mAP under this
    protocol is usually reported from `ranking_scores` (all gallery images).

    References
    ----------
    .. [1] W. Li et al. "DeepReID: Deep Filter Pairing Neural Network for Person
       Re-identification." CVPR 2014.
    """
    _protocol.check_options(max_rank, "trapezoidal", chunk_size)
    if (
        isinstance(num_repeats, bool)
        or not isinstance(num_repeats, (int, np.integer))
        or num_repeats < 1
    ):
        raise ValueError(f"Received: num_repeats={num_repeats!r}. Expected a positive integer.")
    distances, protocol = _protocol.setup_from_distances(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, None
    )
    num_queries, num_gallery = protocol.num_queries, protocol.num_gallery
    keys = np.random.default_rng(seed).random((num_repeats, num_gallery))
    kept_columns, protocol = protocol.without_junk_columns()
    if kept_columns is not None:
        keys = keys[:, kept_columns]
    identities = np.unique(protocol.gallery_pids)
    # Each identity's representative in each draw: its item with the largest key.
    representatives = []
    for repeat_keys in keys:
        by_identity_then_key = np.lexsort((repeat_keys, protocol.gallery_pids))
        last = np.searchsorted(protocol.gallery_pids[by_identity_then_key], identities, "right") - 1
        representatives.append(by_identity_then_key[last])
    hits = np.zeros(max_rank)
    first_match_rank = np.full(num_queries, -1, dtype=np.int64)
    chunk_size = _chunk_size(chunk_size, num_queries, num_gallery)
    for start, stop, chunk in _matrix_chunks(distances, chunk_size):
        _check_finite(chunk, "distances", start, stop)
        if kept_columns is not None:
            chunk = chunk[:, kept_columns]
        rows, columns, is_good = protocol.identity_items(start, stop)
        valid = np.bincount(rows[is_good], minlength=stop - start) > 0
        if not valid.any():
            continue
        first_match_rank[start:stop][valid] = 0
        own_identity = protocol.query_pids[start:stop, None] == identities[None, :]
        for repeat_keys, representative in zip(keys, representatives, strict=True):
            # The query's own identity: its true match with the largest key (last by key).
            by_row_then_key = np.lexsort((np.where(is_good, repeat_keys[columns], -1.0), rows))
            last = np.searchsorted(rows[by_row_then_key], np.arange(stop - start), "right") - 1
            own = columns[by_row_then_key[np.maximum(last, 0)]]
            own_distance = chunk[np.arange(stop - start), own][:, None]
            ahead = _is_ahead(
                chunk[:, representative], representative[None, :], own_distance, own[:, None]
            )
            rank = (ahead & ~own_identity).sum(axis=1)
            hits += (rank[valid, None] < np.arange(1, max_rank + 1)[None, :]).sum(axis=0)
    # Only to raise or warn like the other functions; the scores are the CMC below.
    nothing = np.zeros(num_queries)
    _protocol.aggregate(
        nothing,
        nothing,
        first_match_rank,
        protocol.query_pids,
        max_rank=max_rank,
        ap_method="trapezoidal",
        stacklevel=3,
    )
    return hits / (int((first_match_rank >= 0).sum()) * num_repeats)
