"""Tests for keras_rollback.data.readers: reading a ReID dataset by name."""

import pytest

from keras_rollback.data import readers
from keras_rollback.data import synthetic


def test_reads_synthetic_data_as_market1501(tmp_path):
    root = synthetic.write_synthetic_market1501(
        tmp_path,
        num_train_identities=2,
        num_test_identities=2,
        num_cameras=2,
        images_per_camera=2,
        num_distractors=0,
        num_junk=0,
        image_size=(32, 16),
        seed=0,
    )
    dataset = readers.read_reid_dataset("market1501", root)
    assert (len(dataset.train), len(dataset.query), len(dataset.gallery)) == (8, 4, 4)
    assert dataset.name == "Market-1501"


def test_cuhk03_subsets_are_names(tmp_path):
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / "detected" / folder).mkdir(parents=True)
        (tmp_path / "detected" / folder / "0001_c1_1.png").write_bytes(b"")
    assert readers.read_reid_dataset("cuhk03_np_detected", tmp_path).name == "CUHK03-np (detected)"


def test_unknown_name_is_echoed(tmp_path):
    with pytest.raises(
        ValueError, match=r"Received: name='market'. Expected one of \('market1501'"
    ):
        readers.read_reid_dataset("market", tmp_path)
