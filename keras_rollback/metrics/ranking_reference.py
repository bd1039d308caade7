"""The Market-1501 protocol as a plain loop over the queries, for reading and for checking."""

import numpy as np

from keras_rollback.metrics import _protocol
from keras_rollback.metrics import _validation


def reference_ranking_scores(
    distances,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    *,
    max_rank=50,
    ap_method="trapezoidal",
    query_gallery_indices=None,
):
    """CMC, mAP and mINP computed one query at a time, straight from the protocol's definition.

    The same inputs, checks and results as `ranking_scores` (see its Notes for the
    protocol), written for a reader: sort the query's row, drop the junk, walk the ranked
    list. It costs a sort of every row, O(n_queries x n_gallery log n_gallery): use it to
    check `ranking_scores` (which is tested against it), not to evaluate a benchmark.

    Parameters
    ----------
    distances : array-like or tensor of shape (n_queries, n_gallery)
        Floating, finite distances, ranked in their own dtype.
    query_pids, gallery_pids, query_camids, gallery_camids : array-like of int or None
        As in `ranking_scores`.
    max_rank, ap_method, query_gallery_indices
        As in `ranking_scores`.

    Returns
    -------
    scores : RankingScores

    Raises
    ------
    ValueError
        As `ranking_scores`.

    Warns
    -----
    UserWarning
        When some queries have no valid match; they are skipped and counted.

    Examples
    --------
    >>> import numpy as np
    >>> distances = np.array([[0.1, 0.5, 0.3]], dtype="float32")
    >>> reference_ranking_scores(distances, [1], [1, 1, 2], [0], [1, 2, 1], max_rank=3,
    ...                          ap_method="non_interpolated").mean_average_precision
    0.8333333333333333
    """
    _protocol.check_options(max_rank, ap_method, None)
    distances, protocol = _protocol.setup_from_distances(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, query_gallery_indices
    )
    num_queries = protocol.num_queries
    distances = _validation.to_numpy(distances)
    if not np.isfinite(distances).all():
        rows = np.flatnonzero(~np.isfinite(distances).all(axis=1))
        raise ValueError(
            f"`distances` contains non-finite values (NaN or inf) in rows {rows[:10].tolist()}. "
            "Distances must be finite."
        )
    average_precision = np.full(num_queries, np.nan)
    inverse_negative_penalty = np.full(num_queries, np.nan)
    first_match_rank = np.full(num_queries, -1, dtype=np.int64)
    for q in range(num_queries):
        # Rank the whole gallery: by distance, ties by gallery index (a stable sort).
        ranked = np.argsort(distances[q], kind="stable")
        # Drop the junk: id -1, the query's identity seen by its own camera, the query itself.
        is_junk = protocol.gallery_pids[ranked] == _protocol.JUNK_PID
        if protocol.query_camids is not None:
            is_junk |= (protocol.gallery_pids[ranked] == protocol.query_pids[q]) & (
                protocol.gallery_camids[ranked] == protocol.query_camids[q]
            )
        is_junk |= ranked == protocol.own_columns[q]
        ranked = ranked[~is_junk]
        # The true matches' 0-based positions r_0 < r_1 < ... in the cleaned list.
        matches = np.flatnonzero(protocol.gallery_pids[ranked] == protocol.query_pids[q])
        if len(matches) == 0:
            continue  # no true match: the query is skipped
        ap = 0.0
        for i, r in enumerate(matches.tolist()):
            precision = (i + 1) / (r + 1)
            if ap_method == "trapezoidal":
                precision_before = i / r if r > 0 else 1.0
                ap += (precision_before + precision) / 2
            else:
                ap += precision
        average_precision[q] = ap / len(matches)
        inverse_negative_penalty[q] = len(matches) / (matches[-1] + 1)
        first_match_rank[q] = matches[0]
    return _protocol.aggregate(
        average_precision,
        inverse_negative_penalty,
        first_match_rank,
        protocol.query_pids,
        max_rank=max_rank,
        ap_method=ap_method,
        stacklevel=3,
    )
