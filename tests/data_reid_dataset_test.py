"""Tests for keras_rollback.data.reid_dataset: records, statistics and the generic reader."""

import logging

import pytest

from keras_rollback.data import reid_dataset

PATTERN = r"(?P<pid>-?\d+)_cam(?P<camid>\d+)_"
SPLIT_DIRS = {"train": "tr", "query": "q", "gallery": "g"}


def make_tree(root, files_by_dir):
    """Creates empty files: the reader parses names and never opens the files."""
    for folder, names in files_by_dir.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).write_bytes(b"")
    return root


@pytest.fixture
def custom_tree(tmp_path):
    return make_tree(
        tmp_path / "mine",
        {
            "tr": [
                "0007_cam0_a.png",
                "0007_cam1_b.png",
                "0003_cam2_c.png",
                "-1_cam0_d.png",
                "Thumbs.db",
            ],
            "q": ["0010_cam0_a.jpg", "0011_cam1_a.jpg"],
            "g": [
                "0010_cam1_b.jpg",
                "0011_cam0_b.jpg",
                "0000_cam2_c.jpg",
                "-1_cam1_z.jpg",
                "notes.txt",
            ],
        },
    )


def test_generic_reader_relabels_drops_junk_keeps_distractors(custom_tree):
    dataset = reid_dataset.read_reid_folders(
        custom_tree, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=0, name="mine"
    )
    # Files are sorted by name: 0003 < 0007, so 0003 -> label 0 and 0007 -> label 1.
    assert [(r.pid, r.camid) for r in dataset.train] == [(0, 2), (1, 0), (1, 1)]
    assert dataset.num_train_pids == 2
    assert [(r.pid, r.camid) for r in dataset.query] == [(10, 0), (11, 1)]
    assert sorted(r.pid for r in dataset.gallery) == [0, 10, 11]
    assert dataset.train[0].path == str(custom_tree / "tr" / "0003_cam2_c.png")
    assert dataset.statistics() == {
        "train": {"images": 3, "ids": 2, "cameras": 3},
        "query": {"images": 2, "ids": 2, "cameras": 2},
        "gallery": {"images": 3, "ids": 3, "cameras": 3},
    }
    assert dataset.matches_published() is None


def test_first_camera_index_shifts_camera_ids(custom_tree):
    # The tree has camera 0 files: with cameras numbered from 1 they are invalid, by name.
    with pytest.raises(ValueError, match=r"Invalid camera number 0 in .*_cam0_"):
        reid_dataset.read_reid_folders(
            custom_tree, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=1
        )
    dataset = reid_dataset.read_reid_folders(
        custom_tree, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=-1
    )
    assert [r.camid for r in dataset.query] == [1, 2]


def test_summary_is_logged_with_published_numbers(custom_tree, caplog):
    published = reid_dataset.published_statistics([(3, 2, 3), (2, 2, 2), (3, 3, 3)])
    with caplog.at_level(logging.INFO, logger="absl"):
        dataset = reid_dataset.read_reid_folders(
            custom_tree,
            pattern=PATTERN,
            split_dirs=SPLIT_DIRS,
            first_camera_index=0,
            published=published,
        )
    assert dataset.matches_published() is True
    assert dataset.summary() in caplog.text
    assert "published" in dataset.summary()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_differing_published_numbers_warn(custom_tree, caplog):
    published = reid_dataset.published_statistics([(30, 2, 3), (2, 2, 2), (3, 3, 3)])
    with caplog.at_level(logging.INFO, logger="absl"):
        dataset = reid_dataset.read_reid_folders(
            custom_tree,
            pattern=PATTERN,
            split_dirs=SPLIT_DIRS,
            first_camera_index=0,
            published=published,
        )
    assert dataset.matches_published() is False
    assert "differ from the published" in caplog.text


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(
        reid_dataset.DatasetLayoutError, match=r"not found: .*nowhere(.|\n)*bounding_box_train"
    ):
        reid_dataset.read_reid_folders(tmp_path / "nowhere", pattern=PATTERN)


def test_missing_split_folder_names_it(custom_tree):
    (custom_tree / "q").rename(custom_tree / "queries")
    with pytest.raises(reid_dataset.DatasetLayoutError, match=r"missing \['q'\](.|\n)*queries"):
        reid_dataset.read_reid_folders(
            custom_tree, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=0
        )


def test_nested_dataset_folder_is_suggested(tmp_path, custom_tree):
    with pytest.raises(
        reid_dataset.DatasetLayoutError, match=r"seems to be in .*mine.*pass that folder"
    ):
        reid_dataset.read_reid_folders(
            tmp_path, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=0
        )


def test_unparsable_file_name_names_the_file(custom_tree):
    (custom_tree / "g" / "person7.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"person7\.jpg.*does not match the pattern"):
        reid_dataset.read_reid_folders(
            custom_tree, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=0
        )


def test_split_without_images_is_an_error(custom_tree):
    for image in (custom_tree / "q").iterdir():
        image.unlink()
    (custom_tree / "q" / "readme.txt").write_bytes(b"")
    with pytest.raises(reid_dataset.DatasetLayoutError, match=r"Empty split: no .* image in .*q'"):
        reid_dataset.read_reid_folders(
            custom_tree, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=0
        )


def test_split_with_only_junk_is_an_error(tmp_path):
    root = make_tree(
        tmp_path, {"tr": ["-1_cam0_a.jpg"], "q": ["0001_cam0_a.jpg"], "g": ["0001_cam1_a.jpg"]}
    )
    with pytest.raises(reid_dataset.DatasetLayoutError, match=r"'train' of .* has no usable image"):
        reid_dataset.read_reid_folders(
            root, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=0
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pattern": r"(\d+)_cam(\d+)"}, r"named group `pid`"),
        ({"split_dirs": {"train": "tr", "query": "q"}}, r"Received: split_dirs="),
        ({"first_camera_index": 1.0}, r"Received: first_camera_index=1.0"),
    ],
)
def test_invalid_arguments_are_echoed(custom_tree, kwargs, message):
    arguments = {"pattern": PATTERN, "split_dirs": SPLIT_DIRS, **kwargs}
    with pytest.raises(ValueError, match=message):
        reid_dataset.read_reid_folders(custom_tree, **arguments)


def test_unknown_split_name(custom_tree):
    dataset = reid_dataset.read_reid_folders(
        custom_tree, pattern=PATTERN, split_dirs=SPLIT_DIRS, first_camera_index=0
    )
    with pytest.raises(ValueError, match="Received: name='test'"):
        dataset.split("test")
