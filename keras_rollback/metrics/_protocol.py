"""The setup shared by every ranking function: validation and the protocol's bookkeeping.

`ranking_scores`, `ranking_scores_from_features`, `single_gallery_shot_cmc` and the
reference loop `reference_ranking_scores` all start with `setup`, so they accept and
refuse the same inputs with the same messages, and they see the same junk and true matches.
"""

import warnings

import numpy as np

from keras_rollback.metrics import _validation
from keras_rollback.metrics.ranking_scores import RankingScores

AP_METHODS = ("non_interpolated", "trapezoidal")
JUNK_PID = -1


class Protocol:
    """Host-side bookkeeping of the Market-1501 protocol (numpy, small arrays only).

    Attributes:
        query_pids, query_camids: int64 arrays (n_queries,); camera ids may be None.
        gallery_pids, gallery_camids: int64 arrays (n_gallery,); camera ids may be None.
        own_columns: int64 array (n_queries,): the gallery column holding the query image
            itself (always junk for that query), -1 where none.
        is_kept: bool array (n_gallery,): the columns that are not junk for every query
            (id != -1), or None when every column is kept.
    """

    def __init__(self, query_pids, gallery_pids, query_camids, gallery_camids, own_columns):
        self.query_pids = query_pids
        self.gallery_pids = gallery_pids
        self.query_camids = query_camids
        self.gallery_camids = gallery_camids
        self.own_columns = own_columns
        kept = gallery_pids != JUNK_PID
        if not kept.any():
            raise ValueError("The gallery holds only junk (id -1) items; there is nothing to rank.")
        self.is_kept = None if kept.all() else kept
        # The kept columns grouped by identity, each group in gallery order.
        self._by_identity = np.flatnonzero(kept)[np.argsort(gallery_pids[kept], kind="stable")]
        self._sorted_pids = gallery_pids[self._by_identity]

    @property
    def num_queries(self):
        return len(self.query_pids)

    @property
    def num_gallery(self):
        return len(self.gallery_pids)

    def without_junk_columns(self):
        """`(kept_columns, protocol)`: the id -1 columns dropped, for a gallery to subset.

        `kept_columns` is None when there is nothing to drop (then `protocol` is `self`).
        """
        if self.is_kept is None:
            return None, self
        kept_columns = np.flatnonzero(self.is_kept)
        new_index = np.cumsum(self.is_kept) - 1
        own = np.where(self.own_columns >= 0, new_index[self.own_columns], -1)
        cameras = None if self.gallery_camids is None else self.gallery_camids[kept_columns]
        protocol = Protocol(
            self.query_pids, self.gallery_pids[kept_columns], self.query_camids, cameras, own
        )
        return kept_columns, protocol

    def identity_items(self, start, stop):
        """The gallery items of each query's identity, for queries [start, stop).

        Returns flat arrays (one entry per item, grouped by query, each group in gallery
        order): `rows` (query index - start), `columns` (gallery index) and `is_good`
        (a true match; the others are the identity's junk: the query's camera, or the
        query image itself). The cost is the number of items, whatever the group sizes.
        """
        pids = self.query_pids[start:stop]
        first = np.searchsorted(self._sorted_pids, pids, side="left")
        sizes = np.searchsorted(self._sorted_pids, pids, side="right") - first
        rows = np.repeat(np.arange(stop - start), sizes)
        group_starts = np.cumsum(sizes) - sizes
        offsets = np.arange(len(rows)) - np.repeat(group_starts, sizes)
        columns = self._by_identity[np.repeat(first, sizes) + offsets]
        is_junk = columns == self.own_columns[start:stop][rows]
        if self.query_camids is not None:
            is_junk |= self.gallery_camids[columns] == self.query_camids[start:stop][rows]
        return rows, columns, ~is_junk


def check_options(max_rank, ap_method, chunk_size):
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"Received: max_rank={max_rank!r}. Expected a positive integer.")
    if ap_method not in AP_METHODS:
        raise ValueError(f"Received: ap_method={ap_method!r}. Expected one of {AP_METHODS}.")
    _validation.check_chunk_size(chunk_size)


def setup_from_distances(
    distances, query_pids, gallery_pids, query_camids, gallery_camids, query_gallery_indices
):
    """Validates a distance matrix and the ids of its rows and columns.

    Returns:
        `(distances, protocol)`: the matrix as a 2-D array or tensor, and its `Protocol`.
    """
    distances = _validation.as_matrix(distances)
    num_queries, num_gallery = _validation.check_floating_matrix(distances, "distances")
    protocol = setup(
        num_queries,
        num_gallery,
        query_pids,
        gallery_pids,
        query_camids,
        gallery_camids,
        query_gallery_indices,
    )
    return distances, protocol


def setup(
    num_queries,
    num_gallery,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    query_gallery_indices,
):
    """Validates the ids of a query x gallery problem; returns its `Protocol`."""
    query_pids = _validation.check_ids(query_pids, "query_pids")
    gallery_pids = _validation.check_ids(gallery_pids, "gallery_pids")
    _validation.check_same_length(num_queries, query_pids, "query_pids", "queries")
    _validation.check_same_length(num_gallery, gallery_pids, "gallery_pids", "gallery items")
    if (query_camids is None) != (gallery_camids is None):
        raise ValueError(
            "Give camera ids for both the queries and the gallery, or for neither (None). "
            f"Received: query_camids is {'None' if query_camids is None else 'given'}, "
            f"gallery_camids is {'None' if gallery_camids is None else 'given'}."
        )
    if query_camids is not None:
        query_camids = _validation.check_ids(query_camids, "query_camids")
        gallery_camids = _validation.check_ids(gallery_camids, "gallery_camids")
        _validation.check_same_length(num_queries, query_camids, "query_camids", "queries")
        _validation.check_same_length(
            num_gallery, gallery_camids, "gallery_camids", "gallery items"
        )
    if num_gallery == 0:
        raise ValueError("The gallery is empty (0 items); there is nothing to rank.")
    own_columns = np.full(num_queries, -1, dtype=np.int64)
    if query_gallery_indices is not None:
        own_columns = _validation.check_ids(query_gallery_indices, "query_gallery_indices")
        _validation.check_same_length(num_queries, own_columns, "query_gallery_indices", "queries")
        bad = np.flatnonzero((own_columns < -1) | (own_columns >= num_gallery))
        if len(bad):
            raise ValueError(
                f"`query_gallery_indices` must be gallery indices in [0, {num_gallery}) or -1 "
                f"(the query is not in the gallery). Received: query_gallery_indices[{bad[0]}]"
                f"={own_columns[bad[0]]}."
            )
        present = own_columns >= 0
        wrong = np.flatnonzero(present & (gallery_pids[own_columns] != query_pids))
        if len(wrong):
            q = wrong[0]
            raise ValueError(
                f"`query_gallery_indices[{q}]`={own_columns[q]} points to a gallery item with "
                f"id {gallery_pids[own_columns[q]]}, but query {q} has id {query_pids[q]}: "
                "each index must be the gallery position of the query image itself."
            )
    return Protocol(query_pids, gallery_pids, query_camids, gallery_camids, own_columns)


def aggregate(
    average_precision,
    inverse_negative_penalty,
    first_match_rank,
    query_pids,
    *,
    max_rank,
    ap_method,
    stacklevel,
):
    """`RankingScores` from per-query values (NaN / -1 where a query has no true match).

    Raises when no query has a true match; warns when some have none (`stacklevel` of
    `warnings.warn`, counted from this function).
    """
    valid = first_match_rank >= 0
    num_valid = int(valid.sum())
    num_queries = len(first_match_rank)
    if not num_valid:
        raise ValueError(
            "No query has a valid match in the gallery (an image of the same identity that "
            "is not junk: with camera ids, from another camera), so CMC and mAP are "
            f"undefined. Query ids: {sorted(set(query_pids.tolist()))[:10]}. Check that "
            "query and gallery come from the same split of the dataset."
        )
    if num_valid < num_queries:
        warnings.warn(
            f"{num_queries - num_valid} of {num_queries} queries have no valid match in the "
            "gallery (no image of the same identity that is not junk: with camera ids, from "
            "another camera); they are skipped and the scores average the other queries.",
            stacklevel=stacklevel,
        )
    cmc = (first_match_rank[valid, None] < np.arange(1, max_rank + 1)[None, :]).mean(axis=0)
    return RankingScores(
        cmc=cmc,
        mean_average_precision=float(average_precision[valid].mean()),
        mean_inverse_negative_penalty=float(inverse_negative_penalty[valid].mean()),
        average_precision=average_precision,
        inverse_negative_penalty=inverse_negative_penalty,
        first_match_rank=first_match_rank,
        num_valid_queries=num_valid,
        ap_method=ap_method,
    )
