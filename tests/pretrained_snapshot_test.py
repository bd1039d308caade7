"""PretrainedSnapshot: capture, atomic save, checked load, restore of chosen blocks only."""

import numpy as np
import pytest

from keras_rollback import PretrainedSnapshot
from testing_models import tiny_cnn, tiny_partition, weights_by_path


def test_save_load_restore_round_trip(tmp_path):
    model = tiny_cnn(seed=1)
    partition = tiny_partition(model)
    pretrained = weights_by_path(model)
    path = tmp_path / "nested" / "pretrained.npz"
    PretrainedSnapshot.capture(model, partition).save(path)
    assert [p.name for p in path.parent.iterdir()] == ["pretrained.npz"]  # no temp file left

    model.set_weights([w + 1.0 for w in model.get_weights()])
    PretrainedSnapshot.load(path, partition).restore(model, partition, ["B3", "B4"])
    restored = weights_by_path(model)
    for path_, value in restored.items():
        group = partition.group_of(path_)
        if group in ("B3", "B4"):
            np.testing.assert_array_equal(value, pretrained[path_], err_msg=path_)
        else:
            np.testing.assert_array_equal(value, pretrained[path_] + 1.0, err_msg=path_)


def test_snapshot_holds_blocks_not_head():
    model = tiny_cnn()
    snapshot = PretrainedSnapshot.capture(model, tiny_partition(model))
    assert "b1_bn/moving_variance" in snapshot.arrays
    assert not any(p.startswith("fc/") for p in snapshot.arrays)
    with pytest.raises(ValueError, match="head is never rolled back"):
        snapshot.restore(model, tiny_partition(model), ["head"])


def test_load_reports_missing_weights_and_bad_files(tmp_path):
    model = tiny_cnn()
    partition = tiny_partition(model)
    arrays = PretrainedSnapshot.capture(model, partition).arrays
    del arrays["b2_bn/moving_mean"]
    truncated = tmp_path / "truncated.npz"
    PretrainedSnapshot(arrays).save(truncated)
    with pytest.raises(ValueError, match="truncated.npz.*b2_bn/moving_mean"):
        PretrainedSnapshot.load(truncated, partition)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        PretrainedSnapshot.load(garbage)
    with pytest.raises(FileNotFoundError):
        PretrainedSnapshot.load(tmp_path / "absent.npz")
