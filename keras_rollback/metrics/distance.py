"""Query-gallery distances computed chunk by chunk with `keras.ops`."""

import numpy as np
from keras import ops

from keras_rollback.metrics import _validation

METRICS = ("euclidean", "cosine")

# About 4M distances per chunk: ~16 MB per float32 chunk, so the few temporaries of the
# ranking step stay around 100-200 MB whatever the gallery size.
_ELEMENTS_PER_CHUNK = 2**22
_NORM_ROWS = 2**16


def automatic_chunk_size(num_queries, num_gallery, elements=_ELEMENTS_PER_CHUNK):
    """Query rows processed at once: a power of two, so that a chunk holds at most
    `elements` distances (4M by default).

    Powers of two keep the number of distinct shapes small for backends that compile per shape.
    """
    rows = max(1, elements // max(num_gallery, 1))
    return int(min(1 << (rows.bit_length() - 1), 1 << max(num_queries - 1, 0).bit_length()))


def _check_features(query_features, gallery_features, metric):
    if metric not in METRICS:
        raise ValueError(f"Received: metric={metric!r}. Expected one of {METRICS}.")
    query_shape = _validation.check_floating_matrix(query_features, "query_features")
    gallery_shape = _validation.check_floating_matrix(gallery_features, "gallery_features")
    if gallery_shape[0] == 0:
        raise ValueError("`gallery_features` is empty (0 rows); there is nothing to rank.")
    if query_shape[1] != gallery_shape[1]:
        raise ValueError(
            "`query_features` and `gallery_features` must have the same feature dimension. "
            f"Received: query_features.shape={query_shape}, "
            f"gallery_features.shape={gallery_shape}."
        )
    return query_shape, gallery_shape


def _dtype_name(values):
    return str(getattr(values, "dtype", np.asarray(values).dtype))


def _computation(query_features, gallery_features):
    """`(dtype, array module)` of the distances: float32 on the backend, or float64 in numpy
    when either input is float64. Keras' ops do not keep float64 on every backend (JAX
    without x64 holds float32 only; torch's `ops.matmul` returns float32): numpy does."""
    if "float64" in (_dtype_name(query_features), _dtype_name(gallery_features)):
        return "float64", np
    return "float32", ops


def _as_array(values, dtype, xp):
    if xp is np:
        return _validation.to_numpy(values).astype(dtype, copy=False)
    return ops.convert_to_tensor(values, dtype=dtype)


def iter_distance_chunks(query_features, gallery_features, *, metric="euclidean", chunk_size=None):
    """Yields `(start, stop, distances[start:stop])` of shape (stop-start, G).

    Backend tensors in float32, or numpy float64 arrays when either input is float64.
    The gallery is moved to the device and
    prepared once; each chunk costs one matmul.
    """
    query_shape, gallery_shape = _check_features(query_features, gallery_features, metric)
    _validation.check_chunk_size(chunk_size)
    num_queries, num_gallery = query_shape[0], gallery_shape[0]
    if chunk_size is None:
        chunk_size = automatic_chunk_size(num_queries, num_gallery)
    dtype, xp = _computation(query_features, gallery_features)
    gallery = _as_array(_validation.as_matrix(gallery_features), dtype, xp)
    if metric == "cosine":
        gallery = _l2_normalize(gallery, xp)
    else:
        # By blocks of rows: a whole-gallery square would be a temporary as large as it.
        gallery_sq_norms = xp.concatenate(
            [
                xp.sum(xp.square(gallery[start : start + _NORM_ROWS]), axis=1)
                for start in range(0, num_gallery, _NORM_ROWS)
            ]
        )
    gallery_t = xp.transpose(gallery)
    del gallery  # only the transposed copy is kept
    queries = _validation.as_matrix(query_features)
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        chunk = _as_array(queries[start:stop], dtype, xp)
        if metric == "cosine":
            distances = 1.0 - xp.matmul(_l2_normalize(chunk, xp), gallery_t)
        else:
            # ||q - g||^2 = ||q||^2 + ||g||^2 - 2 q.g; rounding can make it slightly negative.
            query_sq_norms = xp.sum(xp.square(chunk), axis=1, keepdims=True)
            distances = xp.maximum(
                query_sq_norms + gallery_sq_norms[None, :] - 2.0 * xp.matmul(chunk, gallery_t), 0.0
            )
        yield start, stop, distances


def _l2_normalize(x, xp):
    return x / xp.maximum(xp.sqrt(xp.sum(xp.square(x), axis=1, keepdims=True)), 1e-12)


def pairwise_distance(query_features, gallery_features, *, metric="euclidean", chunk_size=None):
    """Compute the query x gallery distance matrix in chunks on the active Keras backend.

    Parameters
    ----------
    query_features : array-like or tensor of shape (n_queries, n_features)
        Floating query features.
    gallery_features : array-like or tensor of shape (n_gallery, n_features)
        Floating gallery features.
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``"euclidean"`` is the *squared* L2 distance ``||q - g||^2`` (it ranks like L2);
        ``"cosine"`` is ``1 - cos(q, g)``. On L2-normalised features both rank alike and
        like the dot-product score of the authors' code.
    chunk_size : int or None, default=None
        Query rows per matmul; ``None`` picks about 4M distances per chunk.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_gallery), float32 (float64 if either input is)
        Smaller means more similar.

    Raises
    ------
    ValueError
        If the inputs are not 2-D floating arrays, the feature dimensions differ, the
        gallery is empty, `metric` is unknown or `chunk_size` is not a positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> pairwise_distance(np.eye(2, dtype="float32"), np.eye(2, dtype="float32"))
    array([[0., 2.],
           [2., 0.]], dtype=float32)
    """
    query_shape, gallery_shape = _check_features(query_features, gallery_features, metric)
    dtype, _ = _computation(query_features, gallery_features)
    distances = np.empty((query_shape[0], gallery_shape[0]), dtype=dtype)
    for start, stop, chunk in iter_distance_chunks(
        query_features, gallery_features, metric=metric, chunk_size=chunk_size
    ):
        distances[start:stop] = ops.convert_to_numpy(chunk)
    return distances
