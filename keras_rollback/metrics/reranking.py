"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised over all images at once.

The reference code keeps the (n_queries + n_gallery)^2 distance matrix, its full argsort and a
dense matrix `V` of the same size, and loops over every image in Python. Here only the
`k1 + 1` nearest neighbours of every image are kept (found chunk by chunk, distances computed
on the active backend), the neighbour sets are compared as small padded integer arrays for all
images at once, and `V` is held as sparse rows (a few dozen entries per image), so that the
Jaccard distance is one gather, one `minimum` and one `bincount` per chunk of queries.
"""

import numpy as np
from keras import ops

from keras_rollback.metrics import _validation
from keras_rollback.metrics import distance as distance_lib

# Rows whose neighbour sets are compared at once: the membership test holds
# rows * (k1 + 1)^2 * (k1 / 2 + 1) booleans (about 5M for k1 = 20).
_EXPANSION_ROWS = 1024
# Feature values gathered at once for the distances of the expanded sets (64 MB).
_GATHERED_PER_CHUNK = 2**24
# (query, k, gallery image) terms of the Jaccard numerator handled at once (~100 MB).
_TRIPLES_PER_CHUNK = 2**22


def _check_rerank_options(k1, k2, lambda_value):
    if isinstance(k1, bool) or not isinstance(k1, (int, np.integer)) or k1 < 1:
        raise ValueError(f"Received: k1={k1!r}. Expected a positive integer.")
    if isinstance(k2, bool) or not isinstance(k2, (int, np.integer)) or not 1 <= k2 <= k1:
        raise ValueError(
            f"Received: k2={k2!r} with k1={k1}. Expected an integer with 1 <= k2 <= k1."
        )
    if (
        isinstance(lambda_value, bool)
        or not isinstance(lambda_value, (int, float, np.integer, np.floating))
        or not 0.0 <= lambda_value <= 1.0
    ):
        raise ValueError(f"Received: lambda_value={lambda_value!r}. Expected a number in [0, 1].")


def _all_features(query_features, gallery_features):
    """Queries then gallery, as one matrix (numpy on the host, a tensor on its device)."""
    if isinstance(query_features, np.ndarray) and isinstance(gallery_features, np.ndarray):
        return np.concatenate(
            [query_features.astype(np.float32), gallery_features.astype(np.float32)]
        )
    return ops.concatenate(
        [
            ops.convert_to_tensor(query_features, dtype="float32"),
            ops.convert_to_tensor(gallery_features, dtype="float32"),
        ]
    )


def _distance_rows(features, metric, chunk_size):
    """Yields `(start, stop, distances)`: float32 numpy rows of the all x all distance matrix."""
    for start, stop, chunk in distance_lib.iter_distance_chunks(
        features, features, metric=metric, chunk_size=chunk_size
    ):
        distances = ops.convert_to_numpy(chunk)
        if not np.isfinite(distances).all():
            raise ValueError(
                f"The features give non-finite distances in rows [{start}, {stop}) of the "
                "query+gallery matrix. Features must be finite."
            )
        yield start, stop, distances


def _nearest_neighbors(distances, width):
    """The `width` nearest columns of each row, closest first, exact ties by column index.

    One float `partition` finds each row's `width`-th smallest distance; every column at most
    that far is a candidate (`width` of them, more on a tie at the boundary), and a lexsort
    of the candidates by (row, distance, column) keeps the first `width` of each row: the
    neighbours a stable argsort of the whole row would give.
    """
    num_rows = len(distances)
    boundary = np.partition(distances, width - 1, axis=1)[:, width - 1]
    rows, columns = np.nonzero(distances <= boundary[:, None])
    order = np.lexsort((columns, distances[rows, columns], rows))
    rows, columns = rows[order], columns[order]
    first = np.searchsorted(rows, np.arange(num_rows))
    return columns[first[:, None] + np.arange(width)[None, :]]


def _reciprocal(neighbors, width):
    """`mask[i, a]`: whether `neighbors[i, a]` (a < width) has `i` among its `width` nearest.

    `neighbors[i, :width][mask[i]]` is the k-reciprocal set R(i, width - 1).
    """
    head = neighbors[:, :width]
    rows = np.arange(len(neighbors))[:, None, None]
    return (head[head] == rows).any(axis=2)


def _expanded_sets(neighbors, reciprocal, half_width):
    """The expanded k-reciprocal set R*(i, k1) of every image, as padded sorted rows.

    Returns `members` of shape (n, w), each row sorted and padded with `n`.
    """
    num_images, width = neighbors.shape
    half = neighbors[:, :half_width]
    half_reciprocal = _reciprocal(neighbors, half_width)
    blocks = []
    for start in range(0, num_images, _EXPANSION_ROWS):
        rows = slice(start, start + _EXPANSION_ROWS)
        nearest, in_set = neighbors[rows], reciprocal[rows]
        # R(c, k1/2) of every candidate c = nearest[i, a]: (rows, width, half_width).
        candidate_sets = half[nearest]
        candidate_mask = half_reciprocal[nearest]
        # Whether each of those images belongs to R(i, k1).
        shared = (
            (candidate_sets[..., None] == nearest[:, None, None, :]) & in_set[:, None, None, :]
        ).any(axis=3)
        overlap = (shared & candidate_mask).sum(axis=2)
        size = candidate_mask.sum(axis=2)
        # Written as in the reference code: a float threshold, strictly exceeded.
        accepted = in_set & (overlap > 2.0 / 3.0 * size)
        padding = num_images
        members = np.concatenate(
            [
                np.where(in_set, nearest, padding),
                np.where(accepted[..., None] & candidate_mask, candidate_sets, padding).reshape(
                    len(nearest), width * half_width
                ),
            ],
            axis=1,
        )
        members.sort(axis=1)
        duplicate = np.zeros_like(members, dtype=bool)
        duplicate[:, 1:] = members[:, 1:] == members[:, :-1]
        members[duplicate] = padding
        members.sort(axis=1)
        blocks.append(members)
    longest = max(int((block < num_images).sum(axis=1).max()) for block in blocks)
    return np.concatenate([block[:, :longest] for block in blocks])


def _member_distances(features, members, metric):
    """`d(i, members[i, w])` for every image `i`, by the formula of `pairwise_distance`.

    Only these few dozen pairs per image are needed after the neighbour search, so they are
    gathered and dotted on the backend rather than computed by a second all x all matmul.
    """
    features = ops.convert_to_tensor(features, dtype="float32")
    if metric == "cosine":
        features = distance_lib._l2_normalize(features, ops)
    squared_norms = ops.sum(ops.square(features), axis=1)
    num_images, num_members = members.shape
    rows_per_chunk = max(1, _GATHERED_PER_CHUNK // (num_members * int(ops.shape(features)[1])))
    distances = np.empty(members.shape, dtype=np.float32)
    for start in range(0, num_images, rows_per_chunk):
        stop = min(start + rows_per_chunk, num_images)
        columns = ops.convert_to_tensor(members[start:stop].astype(np.int32))
        dots = ops.einsum("rd,rwd->rw", features[start:stop], ops.take(features, columns, axis=0))
        if metric == "cosine":
            chunk = 1.0 - dots
        else:
            chunk = ops.maximum(
                squared_norms[start:stop, None] + ops.take(squared_norms, columns) - 2.0 * dots,
                0.0,
            )
        distances[start:stop] = ops.convert_to_numpy(chunk)
    return distances


class _SparseRows:
    """A sparse matrix as row-sorted coordinate lists (a minimal CSR without scipy)."""

    def __init__(self, rows, columns, values, num_rows):
        self.rows, self.columns, self.values = rows, columns, values
        self.row_starts = np.searchsorted(rows, np.arange(num_rows + 1))

    def row_lengths(self):
        return np.diff(self.row_starts)


def _expand(starts, lengths):
    """Concatenated `arange(s, s + n)` for every `(s, n)`: the entries of many sparse rows."""
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(total)


def _query_expansion(weights, neighbors, k2):
    """Row i becomes the mean of the rows of its `k2` nearest images (itself included)."""
    num_images = len(weights.row_starts) - 1
    sources = neighbors[:, :k2].reshape(-1)
    owners = np.repeat(np.arange(num_images), k2)
    lengths = weights.row_lengths()[sources]
    entries = _expand(weights.row_starts[sources], lengths)
    keys = np.repeat(owners, lengths).astype(np.int64) * num_images + weights.columns[entries]
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    values = np.bincount(inverse, weights=weights.values[entries]) / k2
    return _SparseRows(unique_keys // num_images, unique_keys % num_images, values, num_images)


def _jaccard_distance(weights, num_queries):
    """`1 - sum_k min(V[q, k], V[g, k]) / sum_k max(V[q, k], V[g, k])`, query x gallery.

    The rows of `V` sum to 1, so the denominator is `2 - numerator`, as in the reference code.
    The numerator takes one term per (query, k, gallery image) with both entries non-zero,
    found through an inverted index of the gallery rows: these triples are gathered a
    bounded number at a time and summed into the query x gallery matrix by `bincount`.
    """
    num_images = len(weights.row_starts) - 1
    num_gallery = num_images - num_queries
    # Inverted index of the gallery rows: for each column k, the gallery images with
    # V[g, k] != 0 (int32 indices: every pass below streams over millions of triples).
    gallery_entries = slice(weights.row_starts[num_queries], None)
    gallery_columns = weights.columns[gallery_entries]
    by_column = np.argsort(gallery_columns, kind="stable")
    column_images = (weights.rows[gallery_entries][by_column] - num_queries).astype(np.int32)
    column_values = weights.values[gallery_entries][by_column]
    column_lengths = np.bincount(gallery_columns, minlength=num_images)
    column_starts = np.concatenate([[0], np.cumsum(column_lengths)[:-1]])

    query_columns = weights.columns[: weights.row_starts[num_queries]]
    triples_per_query = np.add.reduceat(
        np.append(column_lengths[query_columns], 0), weights.row_starts[: num_queries + 1]
    )[:num_queries]
    jaccard = np.empty((num_queries, num_gallery), dtype=np.float32)
    start = 0
    while start < num_queries:
        # Enough queries for about _TRIPLES_PER_CHUNK triples (at least one query).
        budget = np.cumsum(triples_per_query[start:]) <= _TRIPLES_PER_CHUNK
        stop = start + max(int(budget.sum()), 1)
        own = slice(weights.row_starts[start], weights.row_starts[stop])
        columns = weights.columns[own]
        lengths = column_lengths[columns]
        others = _expand(column_starts[columns], lengths)
        smaller = np.minimum(np.repeat(weights.values[own], lengths), column_values[others])
        cells = np.repeat((weights.rows[own] - start) * num_gallery, lengths)
        cells += column_images[others]
        shared = np.bincount(cells, weights=smaller, minlength=(stop - start) * num_gallery)
        shared = shared.reshape(stop - start, num_gallery)
        jaccard[start:stop] = 1.0 - shared / (2.0 - shared)
        start = stop
    return jaccard


def k_reciprocal_rerank(
    query_features,
    gallery_features,
    *,
    k1=20,
    k2=6,
    lambda_value=0.3,
    metric="euclidean",
    chunk_size=None,
):
    """Re-rank a query x gallery distance matrix with k-reciprocal encoding.

    Parameters
    ----------
    query_features : array-like or tensor of shape (n_queries, n_features)
        Floating query features.
    gallery_features : array-like or tensor of shape (n_gallery, n_features)
        Floating gallery features; every image takes part (junk and distractors too), as
        re-ranking is transductive.
    k1 : int, default=20
        Size of the k-reciprocal neighbourhood.
    k2 : int, default=6
        Neighbours averaged by the local query expansion, ``1 <= k2 <= k1``
        (``k2=1`` turns it off).
    lambda_value : float, default=0.3
        Weight of the original distance in the final one, in ``[0, 1]``.
    metric : {"euclidean", "cosine"}, default="euclidean"
        The original distance (see `pairwise_distance`): squared L2, as the reference code
        uses, or ``1 - cos``.
    chunk_size : int or None, default=None
        Rows of the (n_queries + n_gallery)^2 distance matrix computed at once; ``None``
        picks about 4M distances per chunk.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_gallery), float32
        The final distance; smaller is more similar. Pass it to `ranking_scores`.

    Raises
    ------
    ValueError
        If the features are not 2-D floating arrays of the same width or not finite, the
        gallery is empty, `metric` is unknown, ``k1 < 1``, `k2` is outside ``[1, k1]``,
        `lambda_value` is outside ``[0, 1]`` or `chunk_size` is not a positive integer.

    Notes
    -----
    This is the computation of the authors' code (``re_ranking`` of
    github.com/zhunzhong07/person-re-ranking, also in torchreid and fast-reid), over the
    ``n = n_queries + n_gallery`` images, queries first:

    1. ``d(i, j)``: the `metric` distance between all images; ``d'(i, j) = d(i, j) /
       max_j d(i, j)`` (each row scaled to a maximum of 1). ``N(i, k)``: the ``k + 1``
       nearest images of ``i`` by ``d``, itself included (ties by index).
    2. k-reciprocal set ``R(i, k) = {j in N(i, k) : i in N(j, k)}``.
    3. Expansion: ``R*(i)`` is ``R(i, k1)`` joined with every ``R(c, round(k1 / 2))``,
       ``c in R(i, k1)``, that shares more than 2/3 of its members with ``R(i, k1)``
       (``round`` halves to even, as ``numpy.around``).
    4. ``V[i, j] = exp(-d'(i, j)) / sum_{j' in R*(i)} exp(-d'(i, j'))`` for ``j in R*(i)``,
       else 0.
    5. Local query expansion (if ``k2 > 1``): ``V[i]`` becomes the mean of ``V[j]`` over
       the ``k2`` nearest ``j`` of ``i`` (the first ``k2`` of ``N(i, k1)``).
    6. Jaccard distance ``d_J(q, g) = 1 - sum_k min(V[q, k], V[g, k]) /
       sum_k max(V[q, k], V[g, k])``.
    7. Result: ``(1 - lambda_value) * d_J(q, g) + lambda_value * d'(q, g)`` for query ``q``
       and gallery ``g``.

    Memory: the ``k1 + 1`` nearest neighbours of every image, a few dozen non-zeros of
    ``V`` per image, one chunk of distances, and the returned dense query x gallery matrix
    (which at MSMT17 scale, 11,659 x 82,161, is 3.8 GB). Time: one pass of distance
    matmuls over all ``n x n`` pairs with a partial sort of each row, then work about
    linear in ``n``. Exact float ties are broken by image index, queries first, where the
    reference's (unstable) ``argsort`` leaves them unspecified. The weights of step 4 use
    distances recomputed for the pairs of each ``R*(i)``, which may differ from the matmul's
    in the last float32 bits.

    References
    ----------
    .. [1] Z. Zhong, L. Zheng, D. Cao and S. Li. "Re-ranking Person Re-identification with
       k-reciprocal Encoding." CVPR 2017.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> query = rng.normal(size=(2, 8)).astype("float32")
    >>> gallery = rng.normal(size=(30, 8)).astype("float32")
    >>> k_reciprocal_rerank(query, gallery, k1=5, k2=2).shape
    (2, 30)
    """
    _check_rerank_options(k1, k2, lambda_value)
    _validation.check_chunk_size(chunk_size)
    query_features = _validation.as_matrix(query_features)
    gallery_features = _validation.as_matrix(gallery_features)
    query_shape, gallery_shape = distance_lib._check_features(
        query_features, gallery_features, metric
    )
    num_queries, num_gallery = query_shape[0], gallery_shape[0]
    if num_queries == 0:
        return np.zeros((0, num_gallery), dtype=np.float32)
    features = _all_features(query_features, gallery_features)
    num_images = num_queries + num_gallery
    if chunk_size is None:
        chunk_size = distance_lib.automatic_chunk_size(num_images, num_images)
    width = min(k1 + 1, num_images)
    half_width = min(int(np.around(k1 / 2.0)) + 1, num_images)

    # One pass over the all x all distances: neighbours, row maxima and the query rows.
    neighbors = np.empty((num_images, width), dtype=np.int64)
    largest = np.empty(num_images, dtype=np.float64)
    query_to_gallery = np.empty((num_queries, num_gallery), dtype=np.float32)
    for start, stop, distances in _distance_rows(features, metric, chunk_size):
        neighbors[start:stop] = _nearest_neighbors(distances, width)
        largest[start:stop] = distances.max(axis=1)
        if start < num_queries:
            rows = slice(start, min(stop, num_queries))
            query_to_gallery[rows] = distances[: rows.stop - start, num_queries:]
    # A row of zeros (all images identical) stays zero instead of dividing by zero.
    scale = np.where(largest > 0, largest, 1.0)
    query_to_gallery /= scale[:num_queries, None].astype(np.float32)

    members = _expanded_sets(neighbors, _reciprocal(neighbors, width), half_width)
    present = members < num_images

    # The Gaussian weights of each image's expanded set.
    gathered = _member_distances(features, np.minimum(members, num_images - 1), metric)
    kernel = np.where(present, np.exp(-gathered / scale[:, None]), 0.0)
    values = kernel / np.maximum(kernel.sum(axis=1, keepdims=True), np.finfo(float).tiny)
    weights = _SparseRows(np.nonzero(present)[0], members[present], values[present], num_images)
    k2 = min(k2, num_images)
    if k2 > 1:
        weights = _query_expansion(weights, neighbors, k2)

    jaccard = _jaccard_distance(weights, num_queries)
    # In place: at benchmark scale each query x gallery matrix is hundreds of MB.
    jaccard *= np.float32(1.0 - lambda_value)
    query_to_gallery *= np.float32(lambda_value)
    jaccard += query_to_gallery
    return jaccard
