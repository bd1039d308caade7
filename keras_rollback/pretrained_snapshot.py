"""`PretrainedSnapshot`: the pre-trained weights that blocks are rolled back to."""

import os
import tempfile

import numpy as np
from keras import ops


class PretrainedSnapshot:
    """Host copy of the pre-trained state of every backbone block.

    Holds every weight of every block of a `BlockPartition`, trainable and
    not (BatchNorm moving mean and variance roll back too, as in the
    authors' code), as numpy arrays keyed by variable path. The head is not
    stored: it is never rolled back.

    Capture it once, before fine-tuning changes anything, and save it with
    the run: a resumed run must roll back to the true pre-trained weights,
    not to weights captured from a half-trained model.

    Example:

    ```python
    snapshot = PretrainedSnapshot.capture(model, partition)
    snapshot.save("workdir/pretrained.npz")
    ...
    snapshot = PretrainedSnapshot.load("workdir/pretrained.npz", partition)
    snapshot.restore(model, partition, ["conv3_x", "conv4_x", "conv5_x"])
    ```

    Args:
        arrays: Mapping from variable path to numpy array.
    """

    def __init__(self, arrays):
        self.arrays = {path: np.asarray(a) for path, a in arrays.items()}

    @classmethod
    def capture(cls, model, partition):
        """Copies the current weights of all blocks of `partition` to the host."""
        weights = partition.variables(model, partition.block_names)
        return cls({w.path: np.array(ops.convert_to_numpy(w)) for w in weights})

    def restore(self, model, partition, blocks):
        """Assigns the snapshot's values to the weights of `blocks` in `model`."""
        unknown = [b for b in blocks if b not in partition.block_names]
        if unknown:
            raise ValueError(
                f"Cannot roll back {unknown}: not backbone blocks of the partition "
                f"{list(partition.block_names)} (the head is never rolled back)."
            )
        for weight in partition.variables(model, blocks):
            weight.assign(self.arrays[weight.path])

    def check(self, partition):
        """Raises `ValueError` unless the snapshot has every block weight, shape for shape."""
        expected = {
            path: partition.shape_of(path)
            for block in partition.block_names
            for path in partition.paths(block)
        }
        missing = sorted(set(expected) - set(self.arrays))
        wrong = sorted(
            f"{p}: {self.arrays[p].shape} != {expected[p]}"
            for p in set(expected) & set(self.arrays)
            if tuple(self.arrays[p].shape) != expected[p]
        )
        if missing or wrong:
            raise ValueError(
                f"Snapshot does not fit partition of model {partition.model_name!r}: "
                f"missing weights {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                f"wrong shapes {wrong[:5]}{' ...' if len(wrong) > 5 else ''}."
            )

    def save(self, path):
        """Writes the snapshot to a `.npz` file atomically (temp file, then rename)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{_key(p): a for p, a in self.arrays.items()})
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path, partition=None):
        """Reads a snapshot written by `save`, checked against `partition` if given."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                snapshot = cls({_path(k): data[k] for k in data.files})
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"Cannot read pre-trained snapshot {path!r}: {e}") from e
        if partition is not None:
            try:
                snapshot.check(partition)
            except ValueError as e:
                raise ValueError(f"Pre-trained snapshot {path!r}: {e}") from None
        return snapshot


# npz member names are file names inside a zip: keep variable paths flat.
def _key(path):
    return path.replace("/", "|")


def _path(key):
    return key.replace("|", "/")
