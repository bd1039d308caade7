"""Tests for keras_rollback.callbacks.ReIDEvaluationCallback."""

import csv

import keras
import numpy as np
import pytest

from keras_rollback.callbacks import ReIDEvaluationCallback
from keras_rollback.evaluation import extract_features
from keras_rollback.metrics import k_reciprocal_rerank
from keras_rollback.metrics import ranking_scores
from keras_rollback.metrics import ranking_scores_from_features


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


def train_setup():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    embedding = keras.layers.Dense(4, name="embedding")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(5)(embedding))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    features = keras.Model(inputs, embedding)
    x = np.random.default_rng(1).random((16, 8, 8, 3)).astype(np.float32)
    y = np.arange(16) % 5
    return model, features, x, y


def test_logs_rank_k_map_minp_every_k_epochs_into_history_and_csv(tmp_path):
    model, features, x, y = train_setup()
    callback = ReIDEvaluationCallback(
        identity_batches(0), identity_batches(1), feature_model=features, every_n_epochs=2
    )
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
    callback = ReIDEvaluationCallback(identity_batches(0), identity_batches(1), ranks=(1, 3))
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


def test_rerank_scores_the_k_reciprocal_distances():
    model, features, x, y = train_setup()
    callback = ReIDEvaluationCallback(
        identity_batches(0), identity_batches(1), feature_model=features, rerank=True, ranks=(1, 3)
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
    assert callback.history[0]["val_mAP"] == pytest.approx(expected.mean_average_precision)
    assert callback.history[0]["val_rank1"] == pytest.approx(expected.cmc[0])


def test_state_resets_on_train_begin():
    model, features, x, y = train_setup()
    callback = ReIDEvaluationCallback(
        identity_batches(0), identity_batches(1), feature_model=features
    )
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert list(callback.history) == [0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(every_n_epochs=0), "every_n_epochs=0"),
        (dict(ranks=()), "ranks=()"),
        (dict(ranks=(0, 5)), "ranks=(0, 5)"),
        (dict(metric="l1"), "metric='l1'"),
        (dict(ap_method="11-point"), "ap_method='11-point'"),
        (dict(verbose=2), "verbose=2"),
        (dict(rerank="yes"), "rerank='yes'"),
        (dict(ranks=(1, 5), max_rank=3), "max_rank=3"),
        (dict(feature_model="resnet"), "feature_model='resnet'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReIDEvaluationCallback([], [], **kwargs)


def test_epochs_choice_adds_chosen_epochs_to_every_n_epochs():
    model, features, x, y = train_setup()
    # Period ends at epochs 2 and 5 (1-based), plus every 4 epochs.
    callback = ReIDEvaluationCallback(
        identity_batches(0),
        identity_batches(1),
        feature_model=features,
        epochs=[2, 5],
        every_n_epochs=4,
    )
    model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(callback.history) == [1, 3, 4]  # 0-based
    only_chosen = ReIDEvaluationCallback([], [], epochs=[3])
    assert [only_chosen.evaluates_after(e) for e in range(4)] == [False, False, True, False]
    with pytest.raises(ValueError, match=r"epochs=\(0,\)"):
        ReIDEvaluationCallback([], [], epochs=[0])
