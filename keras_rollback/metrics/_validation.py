"""Input checks shared by the metric functions (scikit-learn style: validate first)."""

import numpy as np
from keras import ops


def check_ids(values, name):
    """Returns `values` as a 1-D int64 numpy array, or raises naming `name`."""
    array = to_numpy(values)
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D (one id per image). Received: {name}.shape={array.shape}."
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`{name}` must hold integers (person ids or camera ids). "
            f"Received: {name}.dtype={array.dtype}."
        )
    return array.astype(np.int64)


def check_same_length(length, values, name, what):
    """Raises if `len(values)` differs from `length` (the number of `what`)."""
    if len(values) != length:
        raise ValueError(
            f"`{name}` has {len(values)} entries but there are {length} {what}. "
            "Every image needs exactly one id and one camera."
        )


def check_floating_matrix(values, name):
    """Checks that `values` is a 2-D floating array or tensor; returns its shape."""
    shape = shape_of(values)
    if len(shape) != 2:
        raise ValueError(f"`{name}` must be 2-D. Received: {name}.shape={shape}.")
    dtype = str(getattr(values, "dtype", np.asarray(values).dtype))
    if "float" not in dtype:
        raise ValueError(f"`{name}` must have a floating dtype. Received: {name}.dtype={dtype}.")
    return shape


def shape_of(values):
    """The shape of an array or tensor as a tuple of ints, without converting it (on
    TensorFlow `ops.shape` of a numpy array copies it into a tensor)."""
    if isinstance(values, np.ndarray):
        return values.shape
    return tuple(int(n) for n in ops.shape(values))


def check_chunk_size(chunk_size):
    """Raises unless `chunk_size` is None or a positive integer."""
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(
            f"Received: chunk_size={chunk_size!r}. Expected None (automatic) or a positive integer."
        )


def to_numpy(values):
    """Array-likes and backend tensors (any device) as a numpy array."""
    if isinstance(values, (list, tuple, np.ndarray)) or np.isscalar(values):
        return np.asarray(values)
    if type(values).__module__.startswith("tensorflow"):
        # A tf.Tensor, also under other Keras backends: `np.asarray` reads its buffer, where
        # `.numpy()` (and Keras' `convert_to_numpy`) copy it (~15 ms per 32M distances).
        return np.asarray(values)
    return np.asarray(ops.convert_to_numpy(values))


def as_matrix(values):
    """Array-likes become numpy arrays; backend tensors are kept as they are."""
    if isinstance(values, (list, tuple)):
        return np.asarray(values)
    return values
