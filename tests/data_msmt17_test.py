"""Tests for keras_rollback.data.msmt17 on generated list files and folders."""

import pytest

from keras_rollback.data import msmt17
from keras_rollback.data import reid_dataset

LISTS = {
    "list_train.txt": (
        "train",
        ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0001/0001_003_15_0303noon_0100_1.jpg 1"],
    ),
    "list_val.txt": ("train", ["0000/0000_010_02_0303morning_0020_0.jpg 0"]),
    "list_query.txt": ("test", ["0000/0000_000_04_0303afternoon_0001_0.jpg 0"]),
    "list_gallery.txt": (
        "test",
        [
            "0000/0000_001_07_0303afternoon_0002_0.jpg 0",
            "0002/0002_000_03_0113morning_0500_2.jpg 2",
        ],
    ),
}


def make_msmt(root, image_dirs=("train", "test")):
    dirs = dict(zip(("train", "test"), image_dirs))
    root.mkdir()
    for list_name, (split_dir, lines) in LISTS.items():
        (root / list_name).write_text("\n".join(lines) + "\n")
        for line in lines:
            path = root / dirs[split_dir] / line.split()[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    return root


def test_reads_lists_with_val_in_train(tmp_path):
    dataset = msmt17.read_msmt17(make_msmt(tmp_path / "MSMT17_V1"))
    assert [(r.pid, r.camid) for r in dataset.train] == [(0, 0), (1, 14), (0, 1)]
    assert [(r.pid, r.camid) for r in dataset.query] == [(0, 3)]
    assert [(r.pid, r.camid) for r in dataset.gallery] == [(0, 6), (2, 2)]
    assert dataset.train[2].path.endswith("train/0000/0000_010_02_0303morning_0020_0.jpg")
    assert dataset.published["train"] == {"images": 32_621, "ids": 1_041, "cameras": 15}


def test_without_val(tmp_path):
    dataset = msmt17.read_msmt17(make_msmt(tmp_path / "MSMT17_V1"), include_val=False)
    assert len(dataset.train) == 2
    assert dataset.published is None


def test_v2_folders(tmp_path):
    dataset = msmt17.read_msmt17(
        make_msmt(tmp_path / "MSMT17_V2", ("mask_train_v2", "mask_test_v2"))
    )
    assert "/mask_test_v2/" in dataset.query[0].path


def test_malformed_line_names_file_and_line(tmp_path):
    root = make_msmt(tmp_path / "MSMT17_V1")
    (root / "list_query.txt").write_text("0000/0000_000_04_0303afternoon_0001_0.jpg\n")
    with pytest.raises(ValueError, match=r"line 1 of .*list_query\.txt"):
        msmt17.read_msmt17(root)


def test_missing_listed_image_is_named(tmp_path):
    root = make_msmt(tmp_path / "MSMT17_V1")
    (root / "test" / "0002" / "0002_000_03_0113morning_0500_2.jpg").unlink()
    with pytest.raises(
        ValueError, match=r"1 image\(s\) listed in .*list_gallery\.txt' do not exist.*0002_000_03"
    ):
        msmt17.read_msmt17(root)


def test_missing_list_file_names_layout(tmp_path):
    root = make_msmt(tmp_path / "MSMT17_V1")
    (root / "list_gallery.txt").unlink()
    with pytest.raises(
        reid_dataset.DatasetLayoutError, match=r"missing \['list_gallery.txt'\](.|\n)*list_val"
    ):
        msmt17.read_msmt17(root)


def test_empty_list_is_an_error(tmp_path):
    root = make_msmt(tmp_path / "MSMT17_V1")
    (root / "list_query.txt").write_text("\n")
    with pytest.raises(reid_dataset.DatasetLayoutError, match=r"Empty split.*list_query\.txt"):
        msmt17.read_msmt17(root)


def test_include_val_must_be_bool(tmp_path):
    with pytest.raises(ValueError, match="Received: include_val='yes'"):
        msmt17.read_msmt17(tmp_path, include_val="yes")
