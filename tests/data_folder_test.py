"""Tests for keras_rollback.data.folder: a user's own dataset, with and without camera ids."""

import json
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_rollback.data import DatasetLayoutError
from keras_rollback.data import ImageTransform
from keras_rollback.data import make_eval_dataset
from keras_rollback.data import read_folder_dataset

WITH_CAMERAS = r"(?P<pid>\d+)/view(?P<camid>\d+)-"
WITHOUT_CAMERAS = r"(?P<pid>\d+)/"


def write_folder_dataset(root, *, pids=(3, 5, 8), cameras=(1, 2), shots=2, strays=("x.png",)):
    """Not Market-1501's layout: one folder per identity, `view<camera>-<shot>.png` inside,
    and `strays` (files no pattern parses) at the top of the train folder."""
    rng = np.random.default_rng(0)
    for split, split_pids in (("train", pids), ("query", pids), ("gallery", pids)):
        for pid in split_pids:
            os.makedirs(os.path.join(root, split, f"{pid:03d}"), exist_ok=True)
            for camera in cameras:
                for shot in range(shots if split != "query" else 1):
                    image = rng.integers(0, 256, (24, 12, 3), dtype=np.uint8)
                    name = f"view{camera}-{shot}.png"
                    Image.fromarray(image).save(os.path.join(root, split, f"{pid:03d}", name))
    for stray in strays:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(os.path.join(root, "train", stray))
    with open(os.path.join(root, "train", "notes.txt"), "w") as f:
        f.write("not an image")
    return root


def test_reads_ids_and_cameras_from_identity_folders(tmp_path):
    root = write_folder_dataset(str(tmp_path))
    dataset = read_folder_dataset(root, pattern=WITH_CAMERAS, skip_unparseable=True)
    assert dataset.num_train_pids == 3
    assert sorted({r.pid for r in dataset.train}) == [0, 1, 2]  # relabelled
    assert sorted({r.pid for r in dataset.gallery}) == [3, 5, 8]  # original ids
    assert sorted({r.camid for r in dataset.query}) == [1, 2]
    assert dataset.has_camera_ids
    assert dataset.statistics()["query"] == {"images": 6, "ids": 3, "cameras": 2}
    assert dataset.query_gallery_indices() is None


def test_unparseable_names_raise_by_default_and_are_skipped_with_a_count(tmp_path, caplog):
    root = write_folder_dataset(str(tmp_path), strays=("a.png", "b.png", "c.jpg"))
    with pytest.raises(ValueError, match=r"a\.png.*does not match.*skip"):
        read_folder_dataset(root, pattern=WITH_CAMERAS)
    with caplog.at_level(logging.WARNING):
        dataset = read_folder_dataset(root, pattern=WITH_CAMERAS, skip_unparseable=True)
    assert len(dataset.train) == 12
    message = next(r.getMessage() for r in caplog.records if "Skipped" in r.getMessage())
    assert "Skipped 3 of 15 images" in message and "a.png, b.png, c.jpg" in message


def test_without_camera_group_camera_ids_are_none(tmp_path):
    root = write_folder_dataset(str(tmp_path), strays=())
    dataset = read_folder_dataset(root, pattern=WITHOUT_CAMERAS)
    assert {r.camid for r in dataset.query + dataset.gallery + dataset.train} == {None}
    assert not dataset.has_camera_ids
    assert dataset.statistics()["gallery"]["cameras"] == 0
    batch = next(
        iter(make_eval_dataset(dataset.query, transform=ImageTransform((16, 8)), batch_size=6))
    )
    assert "camid" not in batch and len(batch["pid"]) == 6


def test_query_folder_shared_with_the_gallery_gives_each_query_its_gallery_index(tmp_path):
    root = write_folder_dataset(str(tmp_path), strays=())
    dataset = read_folder_dataset(
        root,
        pattern=WITHOUT_CAMERAS,
        split_dirs={"train": "train", "query": "gallery", "gallery": "gallery"},
    )
    indices = dataset.query_gallery_indices()
    assert [dataset.gallery[i].path for i in indices] == [r.path for r in dataset.query]


def test_bad_pattern_and_missing_folder_are_clear_errors(tmp_path):
    root = write_folder_dataset(str(tmp_path), strays=())
    with pytest.raises(ValueError, match="named group `pid`"):
        read_folder_dataset(root, pattern=r"(?P<person>\d+)/")
    with pytest.raises(ValueError, match="pattern"):
        read_folder_dataset(root, pattern="")
    with pytest.raises(DatasetLayoutError, match="missing"):
        read_folder_dataset(
            root,
            pattern=WITH_CAMERAS,
            split_dirs={"train": "train", "query": "probe", "gallery": "gallery"},
        )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the experiment loop itself runs on every backend in experiments_main_test; "
    "one command-line run (minutes on 2 cores) checks the folder dataset's flags",
)
@pytest.mark.parametrize(
    "pattern", [WITH_CAMERAS, WITHOUT_CAMERAS], ids=["with_cameras", "without_cameras"]
)
def test_command_line_run_on_a_custom_folder(tmp_path, pattern):
    root = write_folder_dataset(str(tmp_path / "data"))
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "experiments.main",
        "--config=experiments/configs/smoke.py",
        "--config.dataset.name=folder",
        f"--config.dataset.root={root}",
        f"--config.dataset.pattern={pattern}",
        "--config.dataset.skip_unparseable=True",
        "--config.model.weights=",
        "--config.methods=('fine_tune',)",
        "--config.plan.periods=1",
        "--config.image_size=(24, 12)",
        f"--workdir={workdir}",
    ]
    # The source tree (under Bazel, this file is a runfiles symlink to it).
    repo = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, *sys.path]))
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Skipped 1 of 13 images" in result.stderr
    rows = json.loads((workdir / "results.json").read_text())
    evaluated = [row for row in rows if row["mAP"] is not None]
    assert evaluated and all(0.0 <= row["mAP"] <= 1.0 for row in evaluated)
    print(" ".join(command[1:]), "->", {k: evaluated[-1][k] for k in ("rank1", "mAP")})
