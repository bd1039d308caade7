"""CMC, mAP and mINP for person re-identification, computed chunk by chunk with `keras.ops`.

How the fast path avoids sorting: CMC and AP only need, for every true match of a query,
its 0-based position among the query's valid gallery items. For each query the distances of
its own identity's gallery images (a few dozen) are gathered; every gallery distance of the
row is then dropped into one of ~G/8 bins laid over the range of the true matches' distances,
a per-row histogram and its cumulative sum count the items in lower bins, and only the few
items sharing a bin with a true match are compared exactly (distance, then gallery index).
That is a handful of elementwise passes over the distance matrix instead of a sort per row,
and the result is exact, ties included.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_rollback.metrics import _validation
from keras_rollback.metrics import distance as distance_lib
from keras_rollback.metrics import reranking
from keras_rollback.metrics.ranking_scores import RankingScores

AP_METHODS = ("non_interpolated", "trapezoidal")
JUNK_PID = -1
# Items sharing a bin with a true match, compared exactly with the row's slots at once.
_CANDIDATE_BLOCK = 2**14
_INT32_LIMIT = 2**31 - 1
# Average gallery items per histogram bin: fewer bins make the histogram cheaper, more make
# fewer items share a bin with a true match (those are compared exactly).
_ITEMS_PER_BIN = 8
_COLUMN_MULTIPLE = 128


class _Protocol:
    """Host-side bookkeeping of the Market-1501 protocol: junk columns and identity groups."""

    def __init__(self, query_pids, gallery_pids, query_camids, gallery_camids):
        self.query_pids = query_pids
        self.query_camids = query_camids
        keep = gallery_pids != JUNK_PID
        # Identity -1 is junk for every query: its columns are dropped once, up front.
        self.kept_columns = None if keep.all() else np.flatnonzero(keep)
        if not keep.any():
            raise ValueError("The gallery holds only junk (id -1) items; there is nothing to rank.")
        self.gallery_pids = gallery_pids[keep]
        self.gallery_camids = gallery_camids[keep]
        self._order = np.argsort(self.gallery_pids, kind="stable")
        self._sorted_pids = self.gallery_pids[self._order]

    @property
    def num_kept(self):
        return len(self.gallery_pids)

    def identity_slots(self, start, stop):
        """Gallery columns of each query's identity, padded, with their good/junk status.

        Returns `slots` (int32, padding points at column 0), `is_good` (same identity, other
        camera) and `is_junk` (same identity, same camera), all of shape (stop-start, M).
        """
        pids = self.query_pids[start:stop]
        cams = self.query_camids[start:stop]
        first = np.searchsorted(self._sorted_pids, pids, side="left")
        sizes = np.searchsorted(self._sorted_pids, pids, side="right") - first
        # A power of two, so that backends compiling per shape (JAX) see few shapes.
        width = _next_power_of_two(max(int(sizes.max(initial=0)), 8))
        offsets = np.arange(width)
        present = offsets[None, :] < sizes[:, None]
        positions = np.minimum(first[:, None] + offsets[None, :], self.num_kept - 1)
        slots = np.where(present, self._order[positions], 0)
        same_camera = self.gallery_camids[slots] == cams[:, None]
        return slots.astype(np.int32), present & ~same_camera, present & same_camera


def _next_power_of_two(n):
    return 1 << max(int(n) - 1, 0).bit_length()


def _padded_shape(rows, columns, chunk_size):
    """Few distinct shapes, so that backends compiling per shape (JAX) reuse their kernels:
    a short last chunk grows towards the chunk size, columns to a multiple of 128."""
    num_rows = max(rows, min(chunk_size, _next_power_of_two(max(rows, 8))))
    return num_rows, -(-columns // _COLUMN_MULTIPLE) * _COLUMN_MULTIPLE


def _check_finite(chunk, name, start):
    """Raises unless every distance of the chunk (rows from `start`) is finite."""
    rows = int(ops.shape(chunk)[0])
    finite = (
        np.isfinite(chunk).all()
        if isinstance(chunk, np.ndarray)
        else bool(ops.convert_to_numpy(ops.all(ops.isfinite(chunk))))
    )
    if not finite:
        raise ValueError(
            f"`{name}` contains non-finite values (NaN or inf) in rows "
            f"[{start}, {start + rows}). Distances must be finite."
        )


def _padded_chunk(chunk, chunk_size):
    """Pads a backend tensor of distances with +inf (farther than every true match)."""
    rows, columns = (int(n) for n in ops.shape(chunk))
    num_rows, num_columns = _padded_shape(rows, columns, chunk_size)
    return ops.pad(
        chunk,
        [(0, num_rows - rows), (0, num_columns - columns)],
        constant_values=np.inf,
    )


def _prepared_chunk(distances, protocol, start, stop, chunk_size):
    """Rows [start, stop) of `distances`, checked, junk (-1) columns dropped, padded with +inf.

    A numpy matrix is gathered straight into the padded buffer (one host copy per chunk:
    the copies of a separate gather and pad took a third of the evaluation time); a backend
    tensor is gathered and padded on its device.
    """
    chunk = distances[start:stop]
    _check_finite(chunk, "distances", start)
    if not isinstance(chunk, np.ndarray):
        if protocol.kept_columns is not None:
            chunk = ops.take(chunk, protocol.kept_columns, axis=1)
        return _padded_chunk(chunk, chunk_size)
    rows = stop - start
    num_rows, num_columns = _padded_shape(rows, protocol.num_kept, chunk_size)
    padded = np.empty((num_rows, num_columns), dtype=chunk.dtype)
    padded[rows:] = np.inf
    padded[:rows, protocol.num_kept :] = np.inf
    if protocol.kept_columns is None:
        padded[:rows, : protocol.num_kept] = chunk
    else:
        # mode="clip" skips the bounds check and the temporary buffer of the default mode;
        # the indices come from np.flatnonzero, so they are in range.
        np.take(
            chunk,
            protocol.kept_columns,
            axis=1,
            out=padded[:rows, : protocol.num_kept],
            mode="clip",
        )
    return ops.convert_to_tensor(padded)


def _is_ahead(distance_a, index_a, distance_b, index_b):
    """Whether item a is ranked before item b: closer, or equally close with a lower index."""
    return (distance_a < distance_b) | ((distance_a == distance_b) & (index_a < index_b))


def _true_match_positions(distances, slots, is_good, is_junk):
    """Positions of the identity's items among the valid items of each row.

    The passes over the whole chunk run on the backend (`keras.ops`); everything of the
    size of an identity group runs on the host in numpy.

    Args:
        distances: float tensor from `_prepared_chunk`, junk identity -1 already removed.
        slots, is_good, is_junk: numpy arrays (rows, M) from `_Protocol.identity_slots`
            for the chunk's real rows.

    Returns:
        `(positions, goods_ahead)` int numpy arrays (rows, M): the 0-based position of each
        slot's item among the row's valid items, and how many true matches precede it.
    """
    rows = len(slots)
    num_rows, num_gallery = (int(n) for n in ops.shape(distances))
    if num_rows > rows:
        extra_rows = [(0, num_rows - rows), (0, 0)]
        slots, is_good, is_junk = (np.pad(a, extra_rows) for a in (slots, is_good, is_junk))
    row_starts = np.arange(num_rows, dtype=np.int32)[:, None] * num_gallery
    slot_flat = ops.convert_to_tensor(slots + row_starts)
    flat_distances = ops.reshape(distances, [-1])
    slot_distances = ops.convert_to_numpy(ops.take(flat_distances, slot_flat))

    # Within the identity group (small): who is ahead of whom.
    ahead = _is_ahead(
        slot_distances[:, :, None], slots[:, :, None], slot_distances[:, None, :], slots[:, None, :]
    )
    goods_ahead = (ahead & is_good[:, :, None]).sum(axis=1)
    junk_ahead = (ahead & is_junk[:, :, None]).sum(axis=1)

    # Bins: a monotone map of each distance onto a grid of `num_bins` cells spanning the
    # row's true matches, clipped to [0, num_bins + 1]. Being monotone, an item in a lower
    # bin is strictly closer than a true match in a higher one; only the items sharing a
    # bin with a true match need an exact comparison. Any grid is exact; this one is fast.
    has_good = is_good.any(axis=1)
    good_distances = slot_distances.astype(np.float64)
    lowest = np.where(has_good, np.where(is_good, good_distances, np.inf).min(axis=1), 0.0)
    highest = np.where(has_good, np.where(is_good, good_distances, -np.inf).max(axis=1), 0.0)
    with np.errstate(over="ignore"):
        width = np.where(
            highest > lowest, highest - lowest, np.where(lowest != 0, np.abs(lowest), 1.0)
        )
        num_bins = max(num_gallery // _ITEMS_PER_BIN, 2)
        limits = np.finfo(np.float32)
        # Finite and positive, so that no product below is 0 * inf (NaN).
        scale = np.clip((num_bins - 1) / width, limits.tiny, limits.max)
        origin = np.clip(lowest - width / (num_bins - 1), limits.min, limits.max)
    dtype = keras.backend.standardize_dtype(distances.dtype)
    scaled = ops.clip(
        (distances - ops.convert_to_tensor(origin[:, None], dtype))
        * ops.convert_to_tensor(scale[:, None], dtype),
        0.0,
        float(num_bins + 1),
    )
    bins_per_row = num_bins + 2
    row_offsets = ops.convert_to_tensor(np.arange(num_rows, dtype=np.int32)[:, None] * bins_per_row)
    flat_bins = ops.reshape(ops.cast(scaled, "int32") + row_offsets, [-1])
    slot_bins = ops.convert_to_numpy(ops.take(flat_bins, slot_flat))

    histogram = ops.reshape(
        ops.bincount(flat_bins, minlength=num_rows * bins_per_row), (num_rows, bins_per_row)
    )
    items_below = ops.reshape(ops.cumsum(histogram, axis=1) - histogram, [-1])
    ahead_all = ops.convert_to_numpy(ops.take(items_below, ops.convert_to_tensor(slot_bins)))
    ahead_all = ahead_all.astype(np.int64)

    # Items sharing a bin with a true match: compare them exactly with the row's slots.
    # They are found on the host: a device `nonzero` has a data-dependent shape (JAX would
    # compile it anew for every count), and the bins' lookup in the table of marked bins
    # took TensorFlow and torch 2-6x longer as a device gather than bringing the bins over.
    marked = np.zeros(num_rows * bins_per_row, dtype=bool)
    marked[slot_bins[is_good]] = True
    host_bins = ops.convert_to_numpy(flat_bins)
    candidates = np.flatnonzero(marked[host_bins]).astype(np.int32)
    for begin in range(0, len(candidates), _CANDIDATE_BLOCK):
        block = candidates[begin : begin + _CANDIDATE_BLOCK]
        # Gathered in blocks of one fixed size (one shape to compile); the padding is dropped.
        padded = ops.convert_to_tensor(np.pad(block, (0, _CANDIDATE_BLOCK - len(block))))
        block_distances = ops.convert_to_numpy(ops.take(flat_distances, padded))[: len(block)]
        block_bins = host_bins[block]
        row = block // num_gallery
        hit = (block_bins[:, None] == slot_bins[row]) & _is_ahead(
            block_distances[:, None],
            (block - row * num_gallery)[:, None],
            slot_distances[row],
            slots[row],
        )
        np.add.at(ahead_all, row, hit.astype(np.int64))

    positions = ahead_all - junk_ahead
    return positions[:rows], goods_ahead[:rows]


def _per_query_scores(positions, goods_ahead, is_good, ap_method):
    """AP, INP and first-match position per query from the true matches' positions."""
    positions = positions.astype(np.int64)
    num_good = is_good.sum(axis=1)
    valid = num_good > 0
    # Only the true matches' entries matter; the others may hold any value.
    position = np.where(is_good, positions, 0).astype(np.float64)
    rank_among_good = goods_ahead.astype(np.float64)
    precision = (rank_among_good + 1.0) / (position + 1.0)
    if ap_method == "trapezoidal":
        previous_precision = np.where(
            position > 0, rank_among_good / np.maximum(position, 1.0), 1.0
        )
        terms = (previous_precision + precision) / 2.0
    else:
        terms = precision
    with np.errstate(invalid="ignore", divide="ignore"):
        average_precision = np.where(
            valid, np.where(is_good, terms, 0.0).sum(axis=1) / num_good, np.nan
        )
        last = np.where(is_good, positions, -1).max(axis=1)
        inverse_negative_penalty = np.where(valid, num_good / (last + 1.0), np.nan)
    first = np.where(is_good, positions, np.iinfo(np.int64).max).min(axis=1)
    first = np.where(valid, first, -1).astype(np.int64)
    return average_precision, inverse_negative_penalty, first


def _check_options(max_rank, ap_method, chunk_size):
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"Received: max_rank={max_rank!r}. Expected a positive integer.")
    if ap_method not in AP_METHODS:
        raise ValueError(f"Received: ap_method={ap_method!r}. Expected one of {AP_METHODS}.")
    _validation.check_chunk_size(chunk_size)


def _check_ids(num_queries, num_gallery, query_pids, gallery_pids, query_camids, gallery_camids):
    query_pids = _validation.check_ids(query_pids, "query_pids")
    gallery_pids = _validation.check_ids(gallery_pids, "gallery_pids")
    query_camids = _validation.check_ids(query_camids, "query_camids")
    gallery_camids = _validation.check_ids(gallery_camids, "gallery_camids")
    _validation.check_same_length(num_queries, query_pids, "query_pids", "queries")
    _validation.check_same_length(num_queries, query_camids, "query_camids", "queries")
    _validation.check_same_length(num_gallery, gallery_pids, "gallery_pids", "gallery items")
    _validation.check_same_length(num_gallery, gallery_camids, "gallery_camids", "gallery items")
    if num_gallery == 0:
        raise ValueError("The gallery is empty (0 items); there is nothing to rank.")
    return query_pids, gallery_pids, query_camids, gallery_camids


def _evaluate(chunks, protocol, num_queries, max_rank, ap_method):
    """Runs the ranking on `(start, stop, distances)` chunks and aggregates the scores."""
    average_precision = np.full(num_queries, np.nan)
    inverse_negative_penalty = np.full(num_queries, np.nan)
    first_match_rank = np.full(num_queries, -1, dtype=np.int64)
    for start, stop, chunk in chunks:
        slots, is_good, is_junk = protocol.identity_slots(start, stop)
        positions, goods_ahead = _true_match_positions(chunk, slots, is_good, is_junk)
        (
            average_precision[start:stop],
            inverse_negative_penalty[start:stop],
            first_match_rank[start:stop],
        ) = _per_query_scores(positions, goods_ahead, is_good, ap_method)
    valid = first_match_rank >= 0
    num_valid = int(valid.sum())
    if num_valid:
        cmc = (first_match_rank[valid, None] < np.arange(1, max_rank + 1)[None, :]).mean(axis=0)
        mean_ap = float(average_precision[valid].mean())
        mean_inp = float(inverse_negative_penalty[valid].mean())
    else:
        cmc = np.full(max_rank, np.nan)
        mean_ap = mean_inp = float("nan")
    return RankingScores(
        cmc=cmc,
        mean_average_precision=mean_ap,
        mean_inverse_negative_penalty=mean_inp,
        average_precision=average_precision,
        inverse_negative_penalty=inverse_negative_penalty,
        first_match_rank=first_match_rank,
        num_valid_queries=num_valid,
        ap_method=ap_method,
    )


def _warn_skipped(scores, query_pids, stacklevel):
    if scores.num_valid_queries == 0:
        raise ValueError(
            "No query has a valid match in the gallery (an image of the same identity from "
            f"another camera), so CMC and mAP are undefined. Query ids: {sorted(set(np.asarray(query_pids).tolist()))[:10]}"
            ". Check that query and gallery come from the same split of the dataset."
        )
    if scores.num_skipped_queries:
        warnings.warn(
            f"{scores.num_skipped_queries} of {len(scores.first_match_rank)} queries have no "
            "valid match in the gallery (no image of the same identity from another camera); "
            "they are skipped and the scores average the other queries.",
            stacklevel=stacklevel + 1,
        )


def _chunk_size(chunk_size, num_queries, num_gallery):
    if chunk_size is None:
        return distance_lib.automatic_chunk_size(num_queries, num_gallery)
    if chunk_size * (num_gallery + 2) > _INT32_LIMIT:
        raise ValueError(
            f"Received: chunk_size={chunk_size}. With {num_gallery} gallery items a chunk must "
            f"hold fewer than 2**31 distances; use chunk_size <= {_INT32_LIMIT // (num_gallery + 2)}."
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
    chunk_size=None,
):
    """CMC, mAP and mINP of a query x gallery distance matrix under the Market-1501 protocol.

    Parameters
    ----------
    distances : array-like or tensor of shape (n_queries, n_gallery)
        Floating, finite distances; smaller is more similar. A backend tensor stays on its
        device; a numpy array is moved there one chunk at a time.
    query_pids, gallery_pids : array-like of int, shapes (n_queries,) and (n_gallery,)
        Person ids. Gallery id -1 is junk; id 0 (distractors) is an ordinary negative.
    query_camids, gallery_camids : array-like of int, shapes (n_queries,) and (n_gallery,)
        Camera ids.
    max_rank : int, default=50
        Length of the returned CMC curve.
    ap_method : {"trapezoidal", "non_interpolated"}, default="trapezoidal"
        How AP integrates the precision-recall curve; see Notes.
    chunk_size : int or None, default=None
        Queries evaluated at once; ``None`` picks about 4M distances per chunk, which keeps
        the peak memory near 200 MB whatever the gallery size.

    Returns
    -------
    scores : RankingScores
        ``cmc`` of shape (max_rank,), ``mean_average_precision``,
        ``mean_inverse_negative_penalty``, per-query values and ``num_valid_queries``.

    Raises
    ------
    ValueError
        If lengths do not match the distance matrix, ids are not integers, distances are
        not floating or not finite, the gallery is empty, or an option is out of range.

    Warns
    -----
    UserWarning
        When some queries have no valid match; they are skipped and counted.

    Notes
    -----
    The protocol is the official Market-1501 one (Zheng et al., ICCV 2015), also used for
    DukeMTMC-reID, CUHK03 (767/700 split) and MSMT17. For a query with id ``p`` and camera
    ``c`` the gallery is ranked by increasing distance (ties by gallery order) after
    removing the *junk*: every item with id -1 and every item with id ``p`` and camera
    ``c``. The *true matches* are the remaining items with id ``p`` (other cameras);
    everything else, id-0 distractors included, is a negative. A query with no true match
    is skipped. With the true matches at 0-based positions ``r_0 < r_1 < ...`` of the
    cleaned list (``n`` of them):

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
    """
    _check_options(max_rank, ap_method, chunk_size)
    distances = _validation.as_matrix(distances)
    num_queries, num_gallery = _validation.check_floating_matrix(distances, "distances")
    ids = _check_ids(
        num_queries, num_gallery, query_pids, gallery_pids, query_camids, gallery_camids
    )
    protocol = _Protocol(*ids)
    chunk_size = _chunk_size(chunk_size, num_queries, protocol.num_kept)
    chunks = _matrix_chunks(distances, protocol, chunk_size)
    scores = _evaluate(chunks, protocol, num_queries, max_rank, ap_method)
    _warn_skipped(scores, protocol.query_pids, stacklevel=2)
    return scores


def _matrix_chunks(distances, protocol, chunk_size):
    """Yields `(start, stop, chunk)` of a distance matrix, checked, junk dropped, padded."""
    num_queries = int(ops.shape(distances)[0])
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        yield start, stop, _prepared_chunk(distances, protocol, start, stop, chunk_size)


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
    chunk_size=None,
    rerank=False,
):
    """CMC, mAP and mINP from query and gallery features under the Market-1501 protocol.

    The distances are computed chunk by chunk on the active backend and never held in
    full, so a large benchmark (MSMT17: 11,659 x 82,161) needs no 4 GB distance matrix.

    Parameters
    ----------
    query_features : array-like or tensor of shape (n_queries, n_features)
    gallery_features : array-like or tensor of shape (n_gallery, n_features)
    query_pids, gallery_pids, query_camids, gallery_camids : array-like of int
        As in `ranking_scores`.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Squared L2 distance or ``1 - cosine similarity`` (see `pairwise_distance`).
    max_rank, ap_method, chunk_size
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
    Same protocol and AP definitions as `ranking_scores`. The rolling-back authors score by
    the dot product of L2-normalised features, which ranks exactly like both metrics here.
    With ``rerank=True`` every gallery image, junk (id -1) included, takes part in the
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
    _check_options(max_rank, ap_method, chunk_size)
    if not isinstance(rerank, (bool, np.bool_)):
        raise ValueError(f"Received: rerank={rerank!r}. Expected True or False.")
    query_features = _validation.as_matrix(query_features)
    gallery_features = _validation.as_matrix(gallery_features)
    query_shape, gallery_shape = distance_lib._check_features(
        query_features, gallery_features, metric
    )
    ids = _check_ids(
        query_shape[0], gallery_shape[0], query_pids, gallery_pids, query_camids, gallery_camids
    )
    protocol = _Protocol(*ids)
    if rerank:
        distances = reranking.k_reciprocal_rerank(query_features, gallery_features, metric=metric)
        chunk_size = _chunk_size(chunk_size, query_shape[0], protocol.num_kept)
        scores = _evaluate(
            _matrix_chunks(distances, protocol, chunk_size),
            protocol,
            query_shape[0],
            max_rank,
            ap_method,
        )
        _warn_skipped(scores, protocol.query_pids, stacklevel=2)
        return scores
    if protocol.kept_columns is not None:
        gallery_features = (
            gallery_features[protocol.kept_columns]
            if isinstance(gallery_features, np.ndarray)
            else ops.take(gallery_features, protocol.kept_columns, axis=0)
        )
    chunk_size = _chunk_size(chunk_size, query_shape[0], protocol.num_kept)

    def chunks():
        for start, stop, chunk in distance_lib.iter_distance_chunks(
            query_features, gallery_features, metric=metric, chunk_size=chunk_size
        ):
            _check_finite(chunk, "distances from the features", start)
            yield start, stop, _padded_chunk(chunk, chunk_size)

    scores = _evaluate(chunks(), protocol, query_shape[0], max_rank, ap_method)
    _warn_skipped(scores, protocol.query_pids, stacklevel=2)
    return scores


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
    _check_options(max_rank, "trapezoidal", chunk_size)
    if (
        isinstance(num_repeats, bool)
        or not isinstance(num_repeats, (int, np.integer))
        or num_repeats < 1
    ):
        raise ValueError(f"Received: num_repeats={num_repeats!r}. Expected a positive integer.")
    distances = _validation.as_matrix(distances)
    num_queries, num_gallery = _validation.check_floating_matrix(distances, "distances")
    query_pids, gallery_pids, query_camids, gallery_camids = _check_ids(
        num_queries, num_gallery, query_pids, gallery_pids, query_camids, gallery_camids
    )
    protocol = _Protocol(query_pids, gallery_pids, query_camids, gallery_camids)
    keys = np.random.default_rng(seed).random((num_repeats, num_gallery))
    if protocol.kept_columns is not None:
        keys = keys[:, protocol.kept_columns]
    identities = np.unique(protocol.gallery_pids)
    # Each identity's representative in each draw: its item with the largest key.
    representatives = []
    for repeat_keys in keys:
        by_identity_then_key = np.lexsort((repeat_keys, protocol.gallery_pids))
        last = np.searchsorted(protocol.gallery_pids[by_identity_then_key], identities, "right") - 1
        representatives.append(by_identity_then_key[last])
    chunk_size = _chunk_size(chunk_size, num_queries, protocol.num_kept)
    hits = np.zeros(max_rank)
    num_valid = 0
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        chunk = _prepared_chunk(distances, protocol, start, stop, chunk_size)
        slots, is_good, _ = protocol.identity_slots(start, stop)
        valid = is_good.any(axis=1)
        num_valid += int(valid.sum())
        own_identity = query_pids[start:stop, None] == identities[None, :]
        for repeat_keys, representative in zip(keys, representatives, strict=True):
            # The query's own identity: its valid (other-camera) item with the largest key.
            own = slots[
                np.arange(len(slots)),
                np.argmax(np.where(is_good, repeat_keys[slots], -1.0), axis=1),
            ]
            columns = ops.convert_to_tensor(representative.astype(np.int32))
            represented = ops.convert_to_numpy(ops.take(chunk, columns, axis=1))[: stop - start]
            own_flat = np.arange(stop - start) * int(ops.shape(chunk)[1]) + own
            own_distance = ops.convert_to_numpy(
                ops.take(ops.reshape(chunk, [-1]), ops.convert_to_tensor(own_flat.astype(np.int32)))
            )[:, None]

            ahead = _is_ahead(represented, representative[None, :], own_distance, own[:, None])
            rank = (ahead & ~own_identity).sum(axis=1)
            hits += (rank[valid, None] < np.arange(1, max_rank + 1)[None, :]).sum(axis=0)
    skipped = num_queries - num_valid
    if skipped:
        warnings.warn(
            f"{skipped} of {num_queries} queries have no valid match in the gallery (no image "
            "of the same identity from another camera); they are skipped.",
            stacklevel=2,
        )
    if not num_valid:
        return np.full(max_rank, np.nan)
    return hits / (num_valid * num_repeats)
