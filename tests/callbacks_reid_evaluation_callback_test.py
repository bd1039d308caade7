"""Tests for keras_rollback.callbacks.ReIDEvaluationCallback."""

import csv
import json

import keras
import numpy as np
import pytest
from PIL import Image
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition

from keras_rollback import LayerwiseSGD
from keras_rollback import RollbackRefine
from keras_rollback.callbacks import ReIDEvaluationCallback
from keras_rollback.callbacks.reid_evaluation_callback import Evaluator
from keras_rollback.data import make_eval_dataset
from keras_rollback.data import read_folder_dataset
from keras_rollback.evaluation import ReIDEvaluator
from keras_rollback.evaluation import extract_features
from keras_rollback.metrics import k_reciprocal_rerank
from keras_rollback.metrics import ranking_scores
from keras_rollback.metrics import ranking_scores_from_features
from keras_rollback.metrics import reference_ranking_scores


def identity_batches(seed):
    """Two cameras x 4 identities of 8x8 images whose colour encodes the identity."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(1, 5), 2).astype(np.int32)
    images = pids[:, None, None, None] / 4.0 + 0.1 * rng.random((8, 8, 8, 3))
    return [
        {
            "image": images.astype(np.float32),
            "pid": pids,
            "camid": np.tile([1, 2], 4).astype(np.int32),
            "path": np.array([f"{seed}_{i}.jpg" for i in range(8)]),
        }
    ]


def evaluator(**options):
    return ReIDEvaluator(identity_batches(0), identity_batches(1), **options)


def train_setup(input_shape=(8, 8, 3)):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    embedding = keras.layers.Dense(4, name="embedding")(pooled)
    model = keras.Model(inputs, keras.layers.Dense(5)(embedding))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    features = keras.Model(inputs, embedding)
    x = np.random.default_rng(1).random((16, 8, 8, 3)).astype(np.float32)
    y = np.arange(16) % 5
    return model, features, x, y


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_logs_rank_k_map_minp_every_k_epochs_into_history_and_csv(tmp_path):
    model, features, x, y = train_setup()
    callback = ReIDEvaluationCallback(evaluator(), feature_model=features, every_n_epochs=2)
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        x,
        y,
        epochs=4,
        batch_size=8,
        verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
    )
    assert sorted(callback.history) == [1, 3]  # 0-based epochs 2 and 4
    keys = {"val_rank1", "val_rank5", "val_rank10", "val_mAP", "val_mINP"}
    assert keys <= set(callback.history[3])
    # The last evaluation used the final weights: recompute it independently.
    query = extract_features(features, identity_batches(0), verbose=0)
    gallery = extract_features(features, identity_batches(1), verbose=0)
    expected = ranking_scores_from_features(
        query["features"],
        gallery["features"],
        query["pid"],
        gallery["pid"],
        query["camid"],
        gallery["camid"],
        max_rank=10,
    )
    assert callback.history[3]["val_mAP"] == pytest.approx(expected.mean_average_precision)
    assert history.history["val_mAP"][-1] == pytest.approx(expected.mean_average_precision)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    # CSVLogger fixes its columns at the first epoch, which had no evaluation (documented).
    assert len(rows) == 4 and "val_mAP" not in rows[0]


def test_evaluates_every_epoch_with_model_output_when_no_feature_model(tmp_path):
    model, _, x, y = train_setup()
    callback = ReIDEvaluationCallback(evaluator(ranks=(1, 3)))
    csv_path = tmp_path / "log.csv"
    model.fit(
        x,
        y,
        epochs=2,
        batch_size=8,
        verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
    )
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [set(r) >= {"val_rank1", "val_rank3", "val_mAP", "val_mINP"} for r in rows] == [
        True,
        True,
    ]
    assert 0 < float(rows[-1]["val_mAP"]) <= 1
    assert callback.ranks == (1, 3)


def test_rerank_scores_the_k_reciprocal_distances():
    model, features, x, y = train_setup()
    callback = ReIDEvaluationCallback(
        evaluator(rerank=True, ranks=(1, 3)), feature_model=features, prefix=""
    )
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[callback])
    query = extract_features(features, identity_batches(0), verbose=0)
    gallery = extract_features(features, identity_batches(1), verbose=0)
    expected = ranking_scores(
        k_reciprocal_rerank(query["features"], gallery["features"]),
        query["pid"],
        gallery["pid"],
        query["camid"],
        gallery["camid"],
        max_rank=3,
    )
    assert callback.history[0]["mAP"] == pytest.approx(expected.mean_average_precision)
    assert callback.history[0]["rank1"] == pytest.approx(expected.cmc[0])
    # The evaluator keeps the last features and scores (for pictures).
    np.testing.assert_allclose(callback.last_features[0]["features"], query["features"], atol=1e-5)


def test_state_resets_on_train_begin():
    model, features, x, y = train_setup()
    callback = ReIDEvaluationCallback(evaluator(), feature_model=features)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert list(callback.history) == [0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(every_n_epochs=0), "every_n_epochs=0"),
        (dict(every_n_epochs=True), "every_n_epochs=True"),
        (dict(epochs=[0]), r"epochs=\(0,\)"),
        (dict(period_ends="yes"), "period_ends='yes'"),
        (dict(prefix=None), "prefix=None"),
        (dict(log_path=3), "log_path=3"),
        (dict(log_all_epochs=1), "log_all_epochs=1"),
        (dict(verbose=2), "verbose=2"),
        (dict(feature_model="resnet"), "feature_model='resnet'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReIDEvaluationCallback(evaluator(), **kwargs)


def test_an_evaluator_without_evaluate_is_refused():
    with pytest.raises(ValueError, match="evaluator='market'"):
        ReIDEvaluationCallback("market")
    with pytest.raises(ValueError, match="evaluator=None"):
        ReIDEvaluationCallback()


def test_epochs_choice_adds_chosen_epochs_to_every_n_epochs():
    model, features, x, y = train_setup()
    # Epochs 2 and 5 (1-based), plus every 4 epochs.
    callback = ReIDEvaluationCallback(
        evaluator(), feature_model=features, epochs=[2, 5], every_n_epochs=4
    )
    model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(callback.history) == [1, 3, 4]  # 0-based
    only_chosen = ReIDEvaluationCallback(evaluator(), epochs=[3])
    assert [only_chosen.evaluates_after(e) for e in range(4)] == [False, False, True, False]


def test_period_ends_are_read_from_rollback_refine_logs_and_logged_as_json_lines(tmp_path, capsys):
    model = tiny_cnn()
    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    features = keras.Model(model.input, model.get_layer("pool").output)
    x, y = tiny_data()
    log_path = tmp_path / "evaluations.jsonl"
    callback = ReIDEvaluationCallback(
        evaluator(),
        feature_model=features,
        period_ends=True,
        log_path=log_path,
        verbose=1,
    )
    refine = RollbackRefine(tiny_partition(model), period_epochs=2, verbose=0)
    model.fit(x, y, batch_size=8, epochs=6, verbose=0, callbacks=[refine, callback])
    assert sorted(callback.history) == [1, 3, 5]  # The last epoch of each 2-epoch period.
    lines = read_lines(log_path)
    assert [(r["epoch"], r["period"], r["period_end"]) for r in lines] == [
        (1, 1, 1),
        (3, 2, 1),
        (5, 3, 1),
    ]
    for line in lines:
        assert line["val_mAP"] == pytest.approx(callback.history[line["epoch"]]["val_mAP"])
        assert {"loss", "wall_time", "val_rank1", "val_mINP", "lr_head"} <= set(line)
    assert "Epoch 4, end of period 2: loss=" in capsys.readouterr().out

    # Every epoch, appended to the same file (a resumed run appends too).
    callback = ReIDEvaluationCallback(
        evaluator(),
        feature_model=features,
        period_ends=True,
        log_path=str(log_path),
        log_all_epochs=True,
    )
    refine = RollbackRefine(tiny_partition(model), period_epochs=2, verbose=0)
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[refine, callback])
    more = read_lines(log_path)[3:]
    assert [r["epoch"] for r in more] == [0, 1, 2, 3]
    assert ["val_mAP" in r for r in more] == [False, True, False, True]


def test_period_ends_without_rollback_refine_before_it_raise():
    model, features, x, y = train_setup()
    callback = ReIDEvaluationCallback(evaluator(), feature_model=features, period_ends=True)
    with pytest.raises(ValueError, match="put RollbackRefine before it"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def test_any_object_with_evaluate_is_an_evaluator(tmp_path):
    class Accuracy:
        def __init__(self):
            self.models = []

        def evaluate(self, model):
            self.models.append(model)
            return {"top1": np.float32(0.5)}

    model, _, x, y = train_setup()
    accuracy = Accuracy()
    assert isinstance(accuracy, Evaluator)
    callback = ReIDEvaluationCallback(accuracy, prefix="", log_path=tmp_path / "log.jsonl")
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert accuracy.models == [model, model]  # The trained model, without a feature model.
    assert history.history["top1"] == [0.5, 0.5]
    assert [(r["epoch"], r["top1"]) for r in read_lines(tmp_path / "log.jsonl")] == [
        (0, 0.5),
        (1, 0.5),
    ]


def test_old_call_form_builds_the_evaluator_with_a_deprecation_warning():
    model, features, x, y = train_setup()
    with pytest.warns(DeprecationWarning, match="pass a ReIDEvaluator") as caught:
        callback = ReIDEvaluationCallback(
            identity_batches(0), identity_batches(1), features, ranks=(1, 3), rerank=False
        )
    assert caught[0].filename == __file__
    assert isinstance(callback.evaluator, ReIDEvaluator)
    assert callback.evaluator.ranks == (1, 3) and callback.feature_model is features
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert set(callback.history[0]) == {"val_rank1", "val_rank3", "val_mAP", "val_mINP"}
    with pytest.warns(DeprecationWarning):
        by_name = ReIDEvaluationCallback(
            query_data=identity_batches(0), gallery_data=identity_batches(1), epochs=[2]
        )
    assert by_name.epochs == {2} and by_name.every_n_epochs is None
    # The evaluator's options are still validated, echoing the value.
    with pytest.raises(ValueError, match="metric='l1'"), pytest.warns(DeprecationWarning):
        ReIDEvaluationCallback([], [], metric="l1")
    with pytest.raises(TypeError, match=r"pass \['ranks'\] to ReIDEvaluator"):
        ReIDEvaluationCallback(evaluator(), ranks=(1,))
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['rank'\]"):
        ReIDEvaluationCallback(evaluator(), rank=1)


def test_folder_dataset_without_cameras_evaluates_through_the_callback(tmp_path):
    # One folder is both the query and the gallery; file names carry the id only.
    rng = np.random.default_rng(0)
    for split, count in (("train", 1), ("images", 2)):
        (tmp_path / split).mkdir()
        for pid in range(1, 5):
            for index in range(count):
                colour = np.clip(pid * 60 + rng.integers(-10, 10, size=(16, 8, 3)), 0, 255)
                Image.fromarray(colour.astype(np.uint8)).save(
                    tmp_path / split / f"{pid:04d}_{index}.png"
                )
    dataset = read_folder_dataset(
        tmp_path,
        pattern=r"(?P<pid>\d+)_",
        split_dirs={"train": "train", "query": "images", "gallery": "images"},
    )
    assert all(record.camid is None for record in dataset.query)
    query_gallery_indices = dataset.query_gallery_indices()
    np.testing.assert_array_equal(query_gallery_indices, np.arange(8))
    query = make_eval_dataset(dataset.query, batch_size=4)
    gallery = make_eval_dataset(dataset.gallery, batch_size=4)
    reid_evaluator = ReIDEvaluator(
        query, gallery, ranks=(1, 3), query_gallery_indices=query_gallery_indices
    )
    model, features, x, y = train_setup(input_shape=(None, None, 3))
    callback = ReIDEvaluationCallback(reid_evaluator, feature_model=features)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])

    query_features, gallery_features = callback.last_features
    assert query_features["camid"] is None and gallery_features["camid"] is None
    distances = (
        (query_features["features"][:, None] - gallery_features["features"][None]) ** 2
    ).sum(-1)
    expected = reference_ranking_scores(
        distances,
        query_features["pid"],
        gallery_features["pid"],
        None,
        None,
        max_rank=3,
        query_gallery_indices=query_gallery_indices,
    )
    assert callback.history[0]["val_mAP"] == pytest.approx(expected.mean_average_precision)
    assert callback.history[0]["val_rank1"] == pytest.approx(expected.cmc[0])
    # Each query's own image is left out: its other image of the identity is found.
    assert (reid_evaluator.last_scores.first_match_rank >= 0).all()
