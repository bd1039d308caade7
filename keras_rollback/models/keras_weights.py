"""`load_weights_strict`: loads a Keras `.weights.h5` file only if it fits the model exactly."""

import os
import tempfile

import h5py

from keras_rollback.models.weight_file_errors import WeightFileError
from keras_rollback.models.weight_file_errors import WeightFileNotFoundError


def load_weights_strict(model, path):
    """Loads a `.weights.h5` file into `model`, or raises without touching it.

    `keras.Model.load_weights` silently ignores entries of the file that the
    model lacks, and on a shape mismatch fails after some weights were
    already assigned. Here the file's layout (every stored array's location
    and shape) is first compared with the layout that `model.save_weights`
    would write; any difference is a `ValueError` listing the first missing,
    unexpected and mismatching entries, and nothing is loaded.

    Example:

    ```python
    backbone.save_weights("resnet50.weights.h5")
    load_weights_strict(build_backbone("resnet50"), "resnet50.weights.h5")
    ```

    Args:
        model: Built `keras.Model`.
        path: String or path-like. A `.weights.h5` file written by
            `model.save_weights` for the same architecture.
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise WeightFileError(f"Expected a '.weights.h5' file. Received: path={path!r}")
    if not os.path.isfile(path):
        raise WeightFileNotFoundError(f"Weight file not found. Received: path={path!r}")
    with tempfile.TemporaryDirectory() as tmp:
        reference = os.path.join(tmp, "expected.weights.h5")
        model.save_weights(reference)
        expected = _layout(reference)
    found = _layout(path)
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [
        f"{k}: file {found[k]} vs model {expected[k]}"
        for k in expected
        if k in found and found[k] != expected[k]
    ]
    if missing or unexpected or mismatched:
        raise WeightFileError(
            f"Weight file {path!r} does not fit model {model.name!r}; nothing was loaded. "
            f"{len(missing)} weight(s) missing from the file: {missing[:5]}; {len(unexpected)} "
            f"unexpected: {unexpected[:5]}; {len(mismatched)} with another shape: {mismatched[:5]}."
        )
    model.load_weights(path)


def _layout(path):
    """Location -> shape of every array stored in an h5 file, in file order."""
    layout = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            layout[name] = tuple(item.shape)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return layout
