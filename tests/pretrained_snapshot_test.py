"""PretrainedSnapshot: capture, atomic save, checked load, restore of chosen blocks only."""

import errno
import json

import numpy as np
import pytest
from testing_models import tiny_cnn
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import PretrainedSnapshot


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
    with pytest.raises(ValueError, match=r"truncated\.npz.*b2_bn/moving_mean"):
        PretrainedSnapshot.load(truncated, partition)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=r"garbage\.npz"):
        PretrainedSnapshot.load(garbage)
    with pytest.raises(FileNotFoundError):
        PretrainedSnapshot.load(tmp_path / "absent.npz")


def _saved_snapshot(tmp_path):
    model = tiny_cnn()
    partition = tiny_partition(model)
    path = tmp_path / "pretrained.npz"
    PretrainedSnapshot.capture(model, partition).save(path)
    return path, partition


def _flip_byte_inside(path, array_key):
    """Flips a byte in the middle of one array's data (the zip stores members uncompressed)."""
    data = bytearray(path.read_bytes())
    member = data.find(f"{array_key}.npy".encode())
    offset = data.find(b"\x93NUMPY", member) + 200  # Past the .npy header.
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_records_shape_dtype_and_checksum_of_every_array(tmp_path):
    path, partition = _saved_snapshot(tmp_path)
    with np.load(path, allow_pickle=False) as data:
        manifest = json.loads(data["__manifest__"].tobytes().decode())
    entry = manifest["arrays"]["b1_conv/kernel"]
    assert entry["shape"] == [3, 3, 3, 4]
    assert entry["dtype"] == "<f4"
    assert len(entry["sha256"]) == 64
    assert "__manifest__" not in PretrainedSnapshot.load(path, partition).arrays


def test_corrupted_array_is_reported_by_path_and_name(tmp_path):
    path, partition = _saved_snapshot(tmp_path)
    _flip_byte_inside(path, "b2_conv|kernel")
    with pytest.raises(
        ValueError, match=r"pretrained\.npz.*(checksum \['b2_conv/kernel'\]|Bad CRC)"
    ):
        PretrainedSnapshot.load(path, partition)


def test_truncated_file_is_reported_by_path(tmp_path):
    path, partition = _saved_snapshot(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        ValueError,
        match=r"Cannot read pre-trained snapshot .*pretrained\.npz.*truncated or corrupt",
    ):
        PretrainedSnapshot.load(path, partition)


def test_array_swapped_in_without_its_manifest_entry_is_reported(tmp_path):
    path, partition = _saved_snapshot(tmp_path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["b3_bn|gamma"] = arrays["b3_bn|gamma"] * 2
    np.savez(path, **arrays)
    with pytest.raises(
        ValueError, match=r"pretrained\.npz.*does not match its manifest.*b3_bn/gamma"
    ):
        PretrainedSnapshot.load(path, partition)


def test_file_without_manifest_is_refused_until_its_manifest_is_rebuilt(tmp_path):
    model = tiny_cnn()
    partition = tiny_partition(model)
    arrays = PretrainedSnapshot.capture(model, partition).arrays
    path = tmp_path / "old.npz"
    np.savez(path, **{p.replace("/", "|"): a for p, a in arrays.items()})
    with pytest.raises(ValueError, match=r"old\.npz.*no manifest.*rebuild_manifest"):
        PretrainedSnapshot.load(path, partition)
    PretrainedSnapshot.rebuild_manifest(path)
    loaded = PretrainedSnapshot.load(path, partition)
    np.testing.assert_array_equal(loaded.arrays["b1_conv/kernel"], arrays["b1_conv/kernel"])
    with pytest.raises(ValueError, match="already has a manifest"):
        PretrainedSnapshot.rebuild_manifest(path)


def test_differences_name_the_arrays_of_other_weights(tmp_path):
    model = tiny_cnn()
    partition = tiny_partition(model)
    snapshot = PretrainedSnapshot.capture(model, partition)
    assert snapshot.differences(PretrainedSnapshot.capture(model, partition)) == []
    model.get_layer("b1_conv").kernel.assign(model.get_layer("b1_conv").kernel + 1.0)
    assert snapshot.differences(PretrainedSnapshot.capture(model, partition)) == ["b1_conv/kernel"]


def test_failed_write_keeps_the_previous_file_and_names_the_path(tmp_path, monkeypatch):
    path, partition = _saved_snapshot(tmp_path)
    before = path.read_bytes()

    def disk_full(file, **arrays):
        file.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    snapshot = PretrainedSnapshot.capture(tiny_cnn(seed=3), partition)
    with pytest.raises(OSError, match=r"pretrained\.npz.*No space left on device") as info:
        snapshot.save(path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pretrained.npz"]


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_save(tmp_path):
    path, partition = _saved_snapshot(tmp_path)
    (tmp_path / ".pretrained.npz.tmp-abc123.npz").write_bytes(b"left by a SIGKILL")
    PretrainedSnapshot.load(path, partition).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["pretrained.npz"]
