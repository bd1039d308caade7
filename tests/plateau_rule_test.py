"""PlateauRule: the rule on hand-made sequences, and RollbackRefine following it through model.fit."""

import dataclasses

import keras
import numpy as np
import pytest
from rollback_checks import PeriodStartProbe
from rollback_checks import assert_period_starts_from_rolled_back_state
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import LayerwiseSGD
from keras_rollback import PlateauRule
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine

SCORES = [5.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0]


def _actions(rule, values):
    tracker = rule.tracker()
    return [tracker.update(epoch, value) for epoch, value in enumerate(values)]


def test_rule_on_hand_made_sequences():
    fixed = PlateauRule(patience=1, learning_rate_steps="fixed")
    assert _actions(fixed, [5, 4, 4, 4]) == [None, None, "rollback", "rollback"]
    # min_delta: 3.95 is not better than 4 by more than 0.1.
    assert (
        _actions(PlateauRule(patience=1, min_delta=0.1, learning_rate_steps="fixed"), [4, 3.95])[-1]
        == "rollback"
    )
    # The first plateau decays the rates, the second ends the period.
    assert _actions(PlateauRule(patience=2), [5, 5, 5, 5, 5]) == [
        None,
        None,
        "decay",
        None,
        "rollback",
    ]
    # Too short to end; ended by max_period_epochs without a plateau.
    short = PlateauRule(patience=1, min_period_epochs=3, max_period_epochs=4, max_decays=0)
    assert _actions(short, [5, 5, 5, 4]) == [None, None, "rollback", "rollback"]
    assert _actions(PlateauRule(max_period_epochs=2), [5, 4]) == [None, "rollback"]
    # mode="auto": higher is better for mAP.
    assert _actions(PlateauRule(monitor="val_mAP", patience=1, max_decays=0), [0.5, 0.4]) == [
        None,
        "rollback",
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patience": 0}, "patience=0"),
        ({"min_delta": -1.0}, "min_delta=-1.0"),
        ({"min_period_epochs": 5, "max_period_epochs": 2}, "max_period_epochs=2"),
        ({"learning_rate_steps": "cosine"}, "learning_rate_steps='cosine'"),
        ({"mode": "up"}, "mode='up'"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlateauRule(**kwargs)


def test_every_bad_argument_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        PlateauRule(monitor="", patience=0, max_decays=-1)
    message = str(error.value)
    assert "Received: monitor=''." in message
    assert "Received: patience=0. Expected a positive integer." in message
    assert "Received: max_decays=-1. Expected an integer >= 0." in message


def test_rule_is_a_frozen_value_with_its_config():
    rule = PlateauRule(monitor="val_mAP", min_delta=1, patience=3, max_period_epochs=9)
    config = rule.get_config()
    assert set(config) == {field.name for field in dataclasses.fields(PlateauRule)}
    assert PlateauRule.from_config(config) == rule
    assert isinstance(rule.min_delta, float)
    assert hash(rule) == hash(PlateauRule.from_config(config))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.patience = 5  # type: ignore[misc]
    assert dataclasses.replace(rule, patience=5).patience == 5
    with pytest.raises(ValueError, match="Received: patience=0"):
        dataclasses.replace(rule, patience=0)
    # The run's state lives in the tracker, not in the rule.
    tracker = rule.tracker()
    tracker.update(0, 0.5)
    assert (tracker.best, rule) == (0.5, PlateauRule.from_config(config))


class FeedScores(keras.callbacks.Callback):
    """Puts a made-up `score` into the epoch logs (as an evaluation callback would)."""

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = SCORES[epoch]


def _fit(plan, epochs, snapshot, initial_epoch=0, probe=None):
    model = tiny_cnn()
    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    partition = tiny_partition(model)
    refine = RollbackRefine(partition, plan=plan, snapshot=snapshot, verbose=0)
    x, y = tiny_data()
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        verbose=0,
        callbacks=[FeedScores(), refine, *([probe] if probe else [])],
    )
    return model, partition, refine, history


def test_rollback_follows_plateaus_and_decays_rates(tmp_path):
    rule = PlateauRule(monitor="score", patience=1)
    model = tiny_cnn()
    pretrained = weights_by_path(model)
    probe = PeriodStartProbe()
    model, partition, refine, history = _fit(
        RefinePlan(plateau=rule), 7, str(tmp_path / "pretrained.npz"), probe=probe
    )
    # Epoch 2 is a plateau: decay. Epoch 4 is the next: period 2 starts at epoch 5.
    assert [(p.number, p.start_epoch, p.end_epoch) for p in refine.periods] == [
        (1, 0, 5),
        (2, 5, 7),
    ]
    assert history.history["period"] == [1, 1, 1, 1, 1, 2, 2]
    assert history.history["period_start_epoch"] == [0, 0, 0, 0, 0, 5, 5]
    assert history.history["period_end"] == [0, 0, 0, 0, 1, 0, 1]
    np.testing.assert_allclose(history.history["lr_head"], [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01])
    rates = refine.epoch_records[5]["learning_rates"]
    assert_period_starts_from_rolled_back_state(
        partition, probe, pretrained, 5, partition.block_names[1:], rates, 0.9
    )
    saved = (tmp_path / "pretrained-plateau.json").read_text()
    assert '"period_starts": [\n  0,\n  5\n ]' in saved


def test_resumed_run_replays_the_realised_boundaries(tmp_path):
    rule = PlateauRule(monitor="score", patience=1, learning_rate_steps="fixed")
    plan = RefinePlan(plateau=rule, decay_epochs=20)
    *_, whole, _ = _fit(plan, 7, str(tmp_path / "a" / "pretrained.npz"))
    snapshot = str(tmp_path / "b" / "pretrained.npz")
    _fit(plan, 4, snapshot)
    *_, resumed, _ = _fit(plan, 7, snapshot, initial_epoch=4)
    starts = [(p.number, p.start_epoch, p.end_epoch) for p in whole.periods]
    assert starts == [(1, 0, 3), (2, 3, 5), (3, 5, 7)]
    assert [(p.number, p.start_epoch, p.end_epoch) for p in resumed.periods] == starts
    assert [r["learning_rates"] for r in resumed.epoch_records] == [
        r["learning_rates"] for r in whole.epoch_records[4:]
    ]


def test_missing_monitor_is_reported():
    rule = PlateauRule(monitor="val_mAP")
    model = tiny_cnn()
    model.compile(optimizer=LayerwiseSGD(), loss="sparse_categorical_crossentropy")
    x, y = tiny_data()
    refine = RollbackRefine(tiny_partition(model), plan=RefinePlan(plateau=rule), verbose=0)
    with pytest.raises(ValueError, match="'val_mAP', which is not in the epoch logs"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[refine])
