"""Tests for keras_rollback.data.market1501 on generated trees and on real Market-1501 crops."""

import os

import pytest

from keras_rollback.data import market1501
from keras_rollback.data import reid_dataset


def make_tree(root, files_by_dir):
    for folder, names in files_by_dir.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).write_bytes(b"")
    return root


@pytest.fixture
def market_tree(tmp_path):
    return make_tree(
        tmp_path,
        {
            "bounding_box_train": [
                "0002_c1s1_000451_03.jpg",
                "0002_c2s1_000301_01.jpg",
                "0007_c6s3_071002_01.jpg",
                "Thumbs.db",
            ],
            "query": ["0001_c1s1_001051_00.jpg", "0003_c4s6_016996_00.jpg"],
            "bounding_box_test": [
                "0001_c2s1_000301_01.jpg",
                "0003_c1s6_016996_02.jpg",
                "0000_c3s3_065819_03.jpg",
                "-1_c1s1_000401_03.jpg",
                "-1_c5s2_005401_01.jpg",
            ],
        },
    )


def test_reads_market_names(market_tree):
    dataset = market1501.read_market1501(market_tree)
    assert [(os.path.basename(r.path), r.pid, r.camid) for r in dataset.train] == [
        ("0002_c1s1_000451_03.jpg", 0, 0),
        ("0002_c2s1_000301_01.jpg", 0, 1),
        ("0007_c6s3_071002_01.jpg", 1, 5),
    ]
    assert [(r.pid, r.camid) for r in dataset.query] == [(1, 0), (3, 3)]
    # Junk (-1) dropped, the distractor (0000) kept.
    assert sorted((r.pid, r.camid) for r in dataset.gallery) == [(0, 2), (1, 1), (3, 0)]
    assert dataset.published == market1501.MARKET1501_PUBLISHED
    assert dataset.matches_published() is False


def test_duke_style_name_does_not_parse(market_tree):
    (market_tree / "query" / "0001_c2_f0046182.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"0001_c2_f0046182\.jpg.*does not match"):
        market1501.read_market1501(market_tree)


def test_missing_query_folder_names_layout(market_tree):
    (market_tree / "query").rename(market_tree / "queries")
    with pytest.raises(
        reid_dataset.DatasetLayoutError, match=r"missing \['query'\](.|\n)*bounding_box_test"
    ):
        market1501.read_market1501(market_tree)


def test_published_statistics_are_the_papers():
    assert market1501.MARKET1501_PUBLISHED["train"] == {"images": 12_936, "ids": 751, "cameras": 6}
    assert market1501.MARKET1501_PUBLISHED["query"]["images"] == 3_368
    assert market1501.MARKET1501_PUBLISHED["gallery"]["images"] == 15_913


def test_real_mini_market1501_counts(mini_market1501):
    dataset = market1501.read_market1501(mini_market1501)
    stats = dataset.statistics()
    # Counts stated in ../shared/data/README.md.
    assert (stats["train"]["images"], stats["train"]["ids"]) == (32, 16)
    assert (stats["query"]["images"], stats["query"]["ids"]) == (32, 16)
    assert stats["gallery"]["images"] == 32
    assert {r.pid for r in dataset.gallery} == {r.pid for r in dataset.query}
    assert sorted({r.pid for r in dataset.train}) == list(range(16))
    assert dataset.num_train_pids == 16
    for record in dataset.query + dataset.gallery:
        name = os.path.basename(record.path)
        assert name.startswith(f"{record.pid:04d}_c{record.camid + 1}s")
