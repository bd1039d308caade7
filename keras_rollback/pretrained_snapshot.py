"""`PretrainedSnapshot`: the pre-trained weights that blocks are rolled back to."""

import hashlib
import json
import os

import numpy as np
from keras import ops

from keras_rollback import _atomic_files

# The manifest travels inside the .npz, so the file and its checksums are
# replaced by one atomic rename and can never disagree after a crash.
_MANIFEST_KEY = "__manifest__"
_FORMAT = "keras_rollback.PretrainedSnapshot/1"


class PretrainedSnapshot:
    """Host copy of the pre-trained state of every backbone block.

    Holds every weight of every block of a `BlockPartition`, trainable and
    not (BatchNorm moving mean and variance roll back too, as in the
    authors' code), as numpy arrays keyed by variable path. The head is not
    stored: it is never rolled back.

    Capture it once, before fine-tuning changes anything, and save it with
    the run: a resumed run must roll back to the true pre-trained weights,
    not to weights captured from a half-trained model.

    `save` writes one `.npz` file atomically (temp file, then rename) holding
    the arrays and a small JSON manifest with each array's shape, dtype and
    SHA-256. `load` verifies all three (a truncated, corrupt or edited file
    is reported by path and array name; a file without a manifest is refused,
    see `rebuild_manifest`) and, given a partition, checks the snapshot
    against the model.

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
        """Writes the snapshot and its manifest to a `.npz` file atomically (temp file, then rename)."""
        arrays = {_key(p): np.ascontiguousarray(a) for p, a in self.arrays.items()}
        manifest = {
            "format": _FORMAT,
            "arrays": {
                p: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _sha256(a)}
                for p, a in zip(self.arrays, arrays.values())
            },
        }
        arrays[_MANIFEST_KEY] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)

        def write(tmp):
            with open(tmp, "wb") as f:
                # numpy's stub lets `**arrays` fill `allow_pickle`; the keys are weight paths.
                np.savez(f, **arrays)  # type: ignore[arg-type]

        _atomic_files.atomic_write(
            path, write, suffix=".npz", expected_bytes=sum(a.nbytes for a in arrays.values())
        )

    @classmethod
    def load(cls, path, partition=None):
        """Reads a snapshot written by `save`, verified against its manifest and checked against `partition` if given.

        Raises:
            FileNotFoundError: `path` does not exist.
            ValueError: the file is truncated or corrupt, disagrees with its
                manifest, or (given `partition`) misses weights of the
                partition or has wrong shapes. The message names `path`.
        """
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(
                f"Cannot read pre-trained snapshot {path!r} (truncated or corrupt file?): {e}"
            ) from e
        manifest = arrays.pop(_MANIFEST_KEY, None)
        snapshot = cls({_path(k): a for k, a in arrays.items()})
        if manifest is None:
            raise ValueError(
                f"Pre-trained snapshot {path!r} has no manifest, so its checksums cannot be "
                "verified (written by an older keras_rollback, or not by PretrainedSnapshot). "
                "If you trust its arrays, add one with "
                f"PretrainedSnapshot.rebuild_manifest({path!r}); otherwise delete it."
            )
        snapshot._verify(manifest, path)
        if partition is not None:
            try:
                snapshot.check(partition)
            except ValueError as e:
                raise ValueError(f"Pre-trained snapshot {path!r}: {e}") from None
        return snapshot

    @classmethod
    def rebuild_manifest(cls, path):
        """Adds a manifest to a snapshot file that has none, trusting its arrays as they are.

        For `.npz` files written without one (older keras_rollback versions): `load`
        refuses them, since nothing shows that their arrays are intact. Call this only for
        a file you know to be good; it is rewritten atomically.

        Returns:
            The snapshot read from `path`.

        Raises:
            ValueError: if `path` is unreadable or already has a manifest.
        """
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"Cannot read pre-trained snapshot {path!r}: {e}") from e
        if _MANIFEST_KEY in arrays:
            raise ValueError(f"Pre-trained snapshot {path!r} already has a manifest.")
        snapshot = cls({_path(k): a for k, a in arrays.items()})
        snapshot.save(path)
        return snapshot

    def differences(self, other):
        """Sorted variable paths whose arrays differ between this snapshot and `other`
        (absent from one of them, or another shape, dtype or value)."""
        paths = set(self.arrays) | set(other.arrays)
        return sorted(
            p
            for p in paths
            if p not in self.arrays
            or p not in other.arrays
            or self.arrays[p].dtype != other.arrays[p].dtype
            or not np.array_equal(self.arrays[p], other.arrays[p])
        )

    def _verify(self, manifest, path):
        try:
            manifest = json.loads(manifest.tobytes().decode())
            entries = manifest["arrays"]
            if manifest.get("format") != _FORMAT or not isinstance(entries, dict):
                raise ValueError(f"unknown format {manifest.get('format')!r}")
        except Exception as e:
            raise ValueError(
                f"Pre-trained snapshot {path!r} has an unreadable manifest: {e}"
            ) from e
        missing = sorted(set(entries) - set(self.arrays))
        unlisted = sorted(set(self.arrays) - set(entries))
        damaged = sorted(
            p
            for p in set(entries) & set(self.arrays)
            if [list(self.arrays[p].shape), self.arrays[p].dtype.str, _sha256(self.arrays[p])]
            != [entries[p].get("shape"), entries[p].get("dtype"), entries[p].get("sha256")]
        )
        if missing or unlisted or damaged:
            raise ValueError(
                f"Pre-trained snapshot {path!r} does not match its manifest (corrupt or "
                f"edited file): arrays missing {missing[:5]}, not in the manifest "
                f"{unlisted[:5]}, with a wrong shape, dtype or checksum {damaged[:5]}."
            )


def _sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# npz member names are file names inside a zip: keep variable paths flat.
def _key(path):
    return path.replace("/", "|")


def _path(key):
    return key.replace("|", "/")
