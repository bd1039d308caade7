"""Tests for keras_rollback.evaluation.feature_extraction, end to end on real Market-1501 crops."""

import pathlib
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_rollback.evaluation import extract_features
from keras_rollback.evaluation import plot_cmc_curve
from keras_rollback.evaluation import plot_ranked_list
from keras_rollback.metrics import pairwise_distance
from keras_rollback.metrics import ranking_scores_from_features

MARKET_NAME = re.compile(r"^(-?\d+)_c(\d)s\d_\d+_\d+\.jpg$")


def tiny_cnn(height=16, width=8, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(6)(x))


def random_batches(num_batches=3, batch_size=4, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.random((batch_size, 16, 8, 3), dtype=np.float32),
            "pid": rng.integers(0, 5, batch_size).astype(np.int32),
            "camid": rng.integers(1, 3, batch_size).astype(np.int32),
            "path": np.array([f"img_{b}_{i}.jpg" for i in range(batch_size)]),
        }
        for b in range(num_batches)
    ]


def test_flip_sum_then_l2_normalisation():
    model = tiny_cnn()
    batches = random_batches()
    out = extract_features(model, batches, verbose=0)
    images = np.concatenate([b["image"] for b in batches])
    expected = model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out["features"], expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["features"], axis=1), 1.0, atol=1e-5)
    assert out["pid"].tolist() == np.concatenate([b["pid"] for b in batches]).tolist()
    assert out["path"][5] == "img_1_1.jpg"


def test_without_flip_or_normalisation_returns_raw_features():
    model = tiny_cnn()
    batches = random_batches(num_batches=1)
    out = extract_features(model, batches, flip=False, normalize=False, verbose=0)
    np.testing.assert_allclose(
        out["features"], model.predict(batches[0]["image"], verbose=0), atol=1e-5
    )


def test_accepts_tf_data_of_dicts_with_progress_bar(capsys):
    batches = random_batches()
    dataset = tf.data.Dataset.from_tensor_slices(
        {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
    ).batch(5)
    out = extract_features(tiny_cnn(), dataset, verbose=1)
    assert out["features"].shape == (12, 6)
    assert out["path"].dtype.kind == "U" and out["path"][0] == "img_0_0.jpg"
    assert "3/3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "dataset, message",
    [
        ([], "no batch"),
        ([{"image": np.zeros((1, 16, 8, 3), "float32")}], "must be a dict with keys"),
        ([(np.zeros((1, 16, 8, 3)), 1)], "must be a dict with keys"),
        (
            [{"image": np.zeros((2, 16, 8, 3)), "pid": [1, 2], "camid": [1, 1], "path": ["a"]}],
            "has 1 paths for 2 images",
        ),
    ],
)
def test_bad_datasets_raise(dataset, message):
    with pytest.raises(ValueError, match=message):
        extract_features(tiny_cnn(), dataset, verbose=0)


def nan_for_image(index, batch_size):
    """A feature model whose feature of one image of each batch is NaN (a model gone wrong)."""
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    # Row `index` of the batch (before the flipped copies) times NaN, the others times 1.
    rows = np.ones((2 * batch_size, 1), np.float32)
    rows[index] = np.nan
    outputs = keras.layers.Lambda(
        lambda t: t * keras.ops.convert_to_tensor(rows), output_shape=(3,)
    )(x)
    return keras.Model(inputs, outputs, name="nan_model")


def test_non_finite_features_are_caught_where_they_arise():
    batches = random_batches(num_batches=3, batch_size=4)
    with pytest.raises(FloatingPointError) as raised:
        extract_features(nan_for_image(2, batch_size=4), batches, verbose=0)
    message = str(raised.value)
    assert "'nan_model'" in message and "batch 0" in message
    assert "1 of the 4 images ('img_0_2.jpg')" in message


def test_non_finite_feature_of_a_flipped_copy_names_its_image():
    # Row 4 + 1 is the flipped copy of image 1.
    with pytest.raises(FloatingPointError, match=r"\('img_0_1\.jpg'\) or their flipped"):
        extract_features(nan_for_image(5, batch_size=4), random_batches(1), verbose=0)


def test_non_finite_pixels_are_named():
    batches = random_batches(num_batches=2)
    batches[1]["image"][3, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"Batch 1 of `dataset`: NaN or infinite .*'img_1_3\.jpg'"):
        extract_features(tiny_cnn(), batches, verbose=0)


def market_split(root, folder):
    """Parses the Market-1501 file names of one folder into a tf.data of dict batches."""
    paths = sorted(p for p in (root / folder).iterdir() if MARKET_NAME.match(p.name))
    pids = [int(MARKET_NAME.match(p.name).group(1)) for p in paths]
    camids = [int(MARKET_NAME.match(p.name).group(2)) for p in paths]

    def load(path, pid, camid):
        image = tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(path), channels=3), (32, 16))
        return {"image": image / 255.0, "pid": pid, "camid": camid, "path": path}

    return (
        tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], pids, camids))
        .map(load)
        .batch(8)
    )


def test_end_to_end_evaluation_on_real_market1501_crops(mini_market1501, tmp_path):
    model = tiny_cnn(height=32, width=16)
    query = extract_features(model, market_split(mini_market1501, "query"), verbose=0)
    gallery = extract_features(model, market_split(mini_market1501, "bounding_box_test"), verbose=0)
    assert query["features"].shape == (32, 6) and gallery["features"].shape == (32, 6)
    assert set(query["pid"]) == set(gallery["pid"]) and len(set(query["pid"])) == 16
    ids = (query["pid"], gallery["pid"], query["camid"], gallery["camid"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # queries whose gallery twin shares their camera
        scores = ranking_scores_from_features(
            query["features"], gallery["features"], *ids, max_rank=10
        )
    assert scores.num_valid_queries > 0
    assert np.all(np.diff(scores.cmc) >= 0) and 0 <= scores.cmc[0] <= 1
    assert 0 < scores.mean_average_precision <= 1 and 0 < scores.mean_inverse_negative_penalty <= 1
    # Pictures of the same evaluation.
    distances = pairwise_distance(query["features"], gallery["features"])
    ranked = plot_ranked_list(
        distances,
        query["path"],
        gallery["path"],
        *ids,
        tmp_path / "ranked.png",
        query_indices=[0, 1],
        top_k=3,
    )
    curve = plot_cmc_curve(scores.cmc, tmp_path / "cmc.png")
    for picture in (ranked, curve):
        assert pathlib.Path(picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
