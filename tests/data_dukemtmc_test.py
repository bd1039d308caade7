"""Tests for keras_rollback.data.dukemtmc on generated folder trees."""

import pytest

from keras_rollback.data import dukemtmc
from keras_rollback.data import reid_dataset


def make_tree(root, files_by_dir):
    for folder, names in files_by_dir.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).write_bytes(b"")
    return root


@pytest.fixture
def duke_tree(tmp_path):
    return make_tree(
        tmp_path,
        {
            "bounding_box_train": [
                "0001_c2_f0046182.jpg",
                "0001_c5_f0051781.jpg",
                "0005_c8_f0001234.jpg",
            ],
            "query": ["0009_c1_f0100000.jpg"],
            "bounding_box_test": ["0009_c3_f0100200.jpg", "0011_c7_f0000009.jpg"],
        },
    )


def test_reads_duke_names(duke_tree):
    dataset = dukemtmc.read_dukemtmc_reid(duke_tree)
    assert [(r.pid, r.camid) for r in dataset.train] == [(0, 1), (0, 4), (1, 7)]
    assert [(r.pid, r.camid) for r in dataset.query] == [(9, 0)]
    assert [(r.pid, r.camid) for r in dataset.gallery] == [(9, 2), (11, 6)]
    assert dataset.published["train"] == {"images": 16_522, "ids": 702, "cameras": 8}


def test_market_style_name_does_not_parse(duke_tree):
    (duke_tree / "bounding_box_test" / "0002_c1s1_000451_03.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"0002_c1s1_000451_03\.jpg.*does not match"):
        dukemtmc.read_dukemtmc_reid(duke_tree)


def test_empty_gallery_is_an_error(duke_tree):
    for image in (duke_tree / "bounding_box_test").iterdir():
        image.unlink()
    with pytest.raises(reid_dataset.DatasetLayoutError, match=r"Empty split.*bounding_box_test"):
        dukemtmc.read_dukemtmc_reid(duke_tree)
