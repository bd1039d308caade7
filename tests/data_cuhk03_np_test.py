"""Tests for keras_rollback.data.cuhk03_np on generated folder trees."""

import pytest

from keras_rollback.data import cuhk03_np
from keras_rollback.data import reid_dataset

SPLIT_FILES = {
    "bounding_box_train": ["0001_c1_1.png", "0001_c2_6.png", "0003_c1_2.png"],
    "query": ["0770_c1_1.png", "0771_c2_7.png"],
    "bounding_box_test": ["0770_c2_6.png", "0771_c1_2.png", "0771_c1_3.png"],
}


@pytest.fixture
def cuhk_tree(tmp_path):
    root = tmp_path / "cuhk03-np"
    for subset, extra in (("labeled", []), ("detected", ["0004_c2_9.png"])):
        for folder, names in SPLIT_FILES.items():
            (root / subset / folder).mkdir(parents=True)
            for name in names + (extra if folder == "bounding_box_train" else []):
                (root / subset / folder / name).write_bytes(b"")
    return root


def test_reads_labeled_and_detected(cuhk_tree):
    labeled = cuhk03_np.read_cuhk03_np(cuhk_tree)
    detected = cuhk03_np.read_cuhk03_np(cuhk_tree, "detected")
    assert [(r.pid, r.camid) for r in labeled.train] == [(0, 0), (0, 1), (1, 0)]
    assert (labeled.num_train_pids, detected.num_train_pids) == (2, 3)
    assert [(r.pid, r.camid) for r in labeled.query] == [(770, 0), (771, 1)]
    assert len(labeled.gallery) == 3
    assert "/detected/" in detected.train[0].path
    assert labeled.published["gallery"]["images"] == 5_328
    assert detected.published["gallery"]["images"] == 5_332


def test_unknown_subset_is_echoed(cuhk_tree):
    with pytest.raises(ValueError, match="Received: subset='label'"):
        cuhk03_np.read_cuhk03_np(cuhk_tree, "label")


def test_missing_subset_names_layout(cuhk_tree):
    (cuhk_tree / "detected").rename(cuhk_tree / "det")
    with pytest.raises(
        reid_dataset.DatasetLayoutError, match=r"missing \['detected'\](.|\n)*PPPP_cC_N\.png"
    ):
        cuhk03_np.read_cuhk03_np(cuhk_tree, "detected")
