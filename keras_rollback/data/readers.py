"""Reads a ReID dataset by name, for configuration files and command lines."""

import functools
from collections.abc import Callable

from keras_rollback.data import cuhk03_np
from keras_rollback.data import dukemtmc
from keras_rollback.data import market1501
from keras_rollback.data import msmt17
from keras_rollback.data import reid_dataset

READERS: dict[str, Callable[..., reid_dataset.ReIDDataset]] = {
    "market1501": market1501.read_market1501,
    "dukemtmc_reid": dukemtmc.read_dukemtmc_reid,
    "cuhk03_np_labeled": functools.partial(cuhk03_np.read_cuhk03_np, subset="labeled"),
    "cuhk03_np_detected": functools.partial(cuhk03_np.read_cuhk03_np, subset="detected"),
    "msmt17": msmt17.read_msmt17,
}


def read_reid_dataset(name, root, **kwargs):
    """Reads the ReID dataset called `name` from `root`.

    Lets a configuration name its dataset with a string. A dataset written by
    `write_synthetic_market1501` is read as `"market1501"`.

    Example:

    >>> dataset = read_reid_dataset("cuhk03_np_detected", "/data/cuhk03-np")  # doctest: +SKIP

    Args:
        name: str. One of `"market1501"`, `"dukemtmc_reid"`, `"cuhk03_np_labeled"`,
            `"cuhk03_np_detected"`, `"msmt17"`.
        root: path-like. The dataset folder the reader expects.
        **kwargs: Options of that reader.

    Returns:
        A `ReIDDataset`.

    Raises:
        ValueError: if `name` is unknown.
    """
    if name not in READERS:
        raise ValueError(
            f"Unknown ReID dataset. Received: name={name!r}. Expected one of {tuple(READERS)}."
        )
    return READERS[name](root, **kwargs)
