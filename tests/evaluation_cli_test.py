"""Tests for keras-rollback-evaluate (keras_rollback.evaluation.cli and .model_evaluation).

The command runs as a subprocess on the real Market-1501 crops and on a folder dataset
without cameras; its scores are checked against the protocol's plain loop
(`reference_ranking_scores`) on features extracted here, and every user mistake against
its one-paragraph error.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from experiments.configs import default as default_config
from keras_rollback import command_line
from keras_rollback.data import DatasetLayoutError
from keras_rollback.data import ImageTransform
from keras_rollback.data import ReIDRecord
from keras_rollback.data import make_eval_dataset
from keras_rollback.data import read_market1501
from keras_rollback.evaluation import ModelInputError
from keras_rollback.evaluation import evaluate_model_file
from keras_rollback.evaluation import extract_features
from keras_rollback.metrics import k_reciprocal_rerank
from keras_rollback.metrics import reference_ranking_scores
from keras_rollback.models import ModelFileError
from keras_rollback.models import build_feature_model
from keras_rollback.models import build_reid_model

IMAGE_SIZE = (64, 32)
RANKS = (1, 5, 10)
SCRIPT = "keras-rollback-evaluate"


def tiny_reid_model(input_shape=(*IMAGE_SIZE, 3)):
    """`build_reid_model`'s head on a two-convolution backbone: fast on 2 cores."""
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        ],
        name="tiny_backbone",
    )
    return build_reid_model(3, backbone, input_shape=input_shape, bottleneck_units=8)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    tiny_reid_model().save(path)
    return path


def write_folder_dataset(root, identities=4, images_per_identity=3):
    """`root/query/<pid>/<n>.png`: one colour per identity plus noise, no camera ids."""
    rng = np.random.default_rng(0)
    for pid in range(1, identities + 1):
        colour = rng.integers(0, 256, 3)
        folder = root / "query" / f"{pid:04d}"
        folder.mkdir(parents=True)
        for index in range(images_per_identity):
            noise = rng.integers(-40, 41, (*IMAGE_SIZE, 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def run_command(args, *, script=False):
    command = (
        [shutil.which(SCRIPT)] if script else [sys.executable, "-m", "keras_rollback.evaluation"]
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("KERAS_ROLLBACK_DEBUG", None)
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, check=False)


def reference_scores(model_file, query_records, gallery_records, *, rerank, **protocol):
    """The scores recomputed here: features of the library pipeline, the protocol's loop."""
    feature_model = build_feature_model(keras.saving.load_model(model_file, compile=False))
    query, gallery = (
        extract_features(
            feature_model,
            make_eval_dataset(records, transform=ImageTransform(IMAGE_SIZE, preprocessing="torch")),
            verbose=0,
        )
        for records in (query_records, gallery_records)
    )
    if rerank:
        distances = k_reciprocal_rerank(query["features"], gallery["features"])
    else:  # Squared L2, in float64 numpy.
        q, g = query["features"].astype(np.float64), gallery["features"].astype(np.float64)
        distances = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2 * q @ g.T
    scores = reference_ranking_scores(
        distances, query["pid"], gallery["pid"], query["camid"], gallery["camid"], **protocol
    )
    return scores.as_logs(ranks=RANKS)


def assert_same_scores(recorded, reference):
    assert recorded.keys() == reference.keys()
    for key in reference:
        assert recorded[key] == pytest.approx(reference[key], abs=1e-6), key


def assert_picture(path, size):
    with Image.open(path) as image:
        assert image.size == size
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10  # Drawn, not blank.


def test_command_on_real_market1501_images(mini_market1501, model_file, tmp_path):
    output = tmp_path / "out"
    result = run_command(
        [
            f"--model={model_file}",
            f"--dataset.root={mini_market1501}",
            "--preprocessing=torch",
            "--evaluation.rerank",
            f"--output_dir={output}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    dataset = read_market1501(mini_market1501)
    for ranking, rerank in (("plain", False), ("re-ranked", True)):
        reference = reference_scores(
            model_file, dataset.query, dataset.gallery, rerank=rerank, max_rank=50
        )
        assert_same_scores(results["scores"][ranking], reference)
        row = next(line for line in result.stdout.splitlines() if line.startswith(ranking))
        printed = [float(value) for value in row.split()[-5:]]
        assert printed == pytest.approx([100 * v for v in reference.values()], abs=0.006)
    assert "rank-1   rank-5  rank-10      mAP     mINP" in result.stdout
    assert results["num_queries"] == 32 and results["num_valid_queries"] == 30
    assert results["settings"]["image_size"] == list(IMAGE_SIZE)
    assert results["dataset"]["camera_ids"] is True
    csv_rows = (output / "results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in csv_rows] == ["ranking", "plain", "re-ranked"]
    assert_picture(output / "cmc.png", (500, 400))
    assert_picture(output / "ranked_list.png", (1210, 1920))  # 8 queries and their top 10.


def test_command_on_a_folder_dataset_without_cameras(model_file, tmp_path):
    """Query and gallery are one folder: each query is left out of its own list."""
    root = write_folder_dataset(tmp_path / "reid")
    args = [
        f"--model={model_file}",
        "--dataset.name=folder",
        f"--dataset.root={root}",
        r"--dataset.pattern=(?P<pid>\d+)/",
        "--dataset.split_dirs.gallery=query",
        "--preprocessing=torch",
        "--evaluation.ranked_list_queries=3",
    ]
    # The console script when installed (pip install -e .), else the module.
    result = run_command(args, script=shutil.which(SCRIPT) is not None)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no camera ids" in result.stdout
    output = model_file.parent / "evaluation"  # The default: beside the model.
    results = json.loads((output / "results.json").read_text())
    records = read_folder_records(root)
    reference = reference_scores(
        model_file,
        records,
        records,
        rerank=False,
        max_rank=50,
        query_gallery_indices=np.arange(len(records)),
    )
    assert_same_scores(results["scores"]["plain"], reference)
    assert list(results["scores"]) == ["plain"]
    assert results["num_valid_queries"] == 12
    assert_picture(output / "ranked_list.png", (1210, 720))  # 3 queries.


def read_folder_records(root):
    return [
        ReIDRecord(str(path), int(path.parent.name), None)
        for path in sorted((root / "query").rglob("*.png"))
    ]


def test_settings_of_the_experiment_run_that_wrote_the_model(model_file, tmp_path):
    workdir = tmp_path / "run"
    (workdir / "rollback").mkdir(parents=True)
    shutil.copy(model_file, workdir / "rollback" / "model.keras")
    config = default_config.get_config()
    config.image_size = IMAGE_SIZE
    config.model.backbone = "resnet18"
    config.evaluation.rerank = True
    config.evaluation.ap_method = "non_interpolated"
    config.dataset.name = "folder"
    config.dataset.root = str(write_folder_dataset(tmp_path / "reid"))
    config.dataset.pattern = r"(?P<pid>\d+)/"
    config.dataset.split_dirs.gallery = "query"
    (workdir / "config.json").write_text(config.to_json())

    results = evaluate_model_file(workdir / "rollback" / "model.keras")
    assert results["settings_from"] == str(workdir / "config.json")
    assert results["settings"]["preprocessing"] == "torch"  # resnet18, torchvision_v1.
    assert results["settings"]["ap_method"] == "non_interpolated"
    assert list(results["scores"]) == ["plain", "re-ranked"]
    assert results["dataset_settings"]["pattern"] == r"(?P<pid>\d+)/"
    assert (workdir / "rollback" / "evaluation" / "results.json").is_file()
    # Flags override the run's settings.
    results = evaluate_model_file(
        workdir / "rollback" / "model.keras",
        {"evaluation": {"rerank": False}, "preprocessing": "caffe"},
        output_dir=tmp_path / "out",
    )
    assert list(results["scores"]) == ["plain"]
    assert results["settings"]["preprocessing"] == "caffe"


def market_tree(root, name="0002_c1s1_000451_03.jpg"):
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (root / split).mkdir(parents=True)
        Image.new("RGB", (32, 64), (120, 30, 200)).save(root / split / name)
    return root


def user_mistakes(tmp_path, model_file, mini_root):
    """`(description, evaluate_model_file arguments, error type, words of the message)`."""
    grey = tmp_path / "grey.keras"
    tiny_reid_model(input_shape=(*IMAGE_SIZE, 1)).save(grey)
    any_size = tmp_path / "any_size.keras"
    keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)]).save(any_size)
    (tmp_path / "not_a_model.h5").write_bytes(b"")
    nested = tmp_path / "nested"
    market_tree(nested / "Market-1501-v15.09.15")
    bad_name = market_tree(tmp_path / "bad_name", name="person2_cam1.jpg")
    market = {"preprocessing": "torch", "dataset": {"root": str(mini_root)}}
    folder = {"name": "folder", "root": str(tmp_path / "reid")}
    return [
        ("missing model", (tmp_path / "none.keras", market), ModelFileError, "not found"),
        ("not a .keras file", (tmp_path / "not_a_model.h5", market), ModelFileError, ".keras"),
        (
            "missing dataset folder",
            (model_file, {**market, "dataset": {"root": str(tmp_path / "absent")}}),
            DatasetLayoutError,
            "not found",
        ),
        (
            "dataset one folder too high",
            (model_file, {**market, "dataset": {"root": str(nested)}}),
            DatasetLayoutError,
            "Market-1501-v15.09.15",
        ),
        (
            "file name that does not parse",
            (model_file, {**market, "dataset": {"root": str(bad_name)}}),
            DatasetLayoutError,
            "person2_cam1.jpg",
        ),
        (
            "folder dataset without a pattern",
            (model_file, {**market, "dataset": folder}),
            DatasetLayoutError,
            "--dataset.pattern",
        ),
        (
            "no dataset folder given",
            (model_file, {"preprocessing": "torch"}),
            DatasetLayoutError,
            "--dataset.root",
        ),
        ("grey-level model", (grey, market), ModelInputError, "(None, 64, 32, 1)"),
        (
            "model of another size",
            (model_file, {**market, "image_size": [128, 64]}),
            ModelInputError,
            "64x32",
        ),
        ("model of any size", (any_size, market), ModelInputError, "--image_size"),
        (
            "no preprocessing outside a work dir",
            (model_file, {"dataset": market["dataset"]}),
            ModelInputError,
            "--preprocessing",
        ),
    ]


def test_each_user_mistake_is_one_paragraph_naming_the_culprit(
    mini_market1501, model_file, tmp_path
):
    for description, (path, overrides), error, words in user_mistakes(
        tmp_path, model_file, mini_market1501
    ):
        with pytest.raises(error) as raised:
            evaluate_model_file(path, overrides, output_dir=tmp_path / "out")
        message = str(raised.value)
        assert words in message, (description, message)
        assert "\n\n" not in message, description
    assert not (tmp_path / "out").exists()  # Nothing written before the mistake is found.


def test_command_reports_a_mistake_without_traceback_unless_debugging(
    model_file, tmp_path, monkeypatch
):
    args = [
        f"--model={model_file}",
        f"--dataset.root={tmp_path / 'absent'}",
        "--preprocessing=torch",
    ]
    result = run_command(args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index("Error: ") :]
    assert str(tmp_path / "absent") in error.splitlines()[0]
    assert "KERAS_ROLLBACK_DEBUG=1" in error
    assert "\n\n" not in error.strip()
    # With KERAS_ROLLBACK_DEBUG=1 the error propagates, and Python shows its traceback (in
    # process here: a second interpreter would cost another Keras import).
    monkeypatch.setenv("KERAS_ROLLBACK_DEBUG", "1")
    with pytest.raises(DatasetLayoutError, match="absent"):
        command_line.reporting_user_errors(
            lambda argv: evaluate_model_file(
                model_file,
                {"preprocessing": "torch", "dataset": {"root": str(tmp_path / "absent")}},
            )
        )(["keras-rollback-evaluate"])
