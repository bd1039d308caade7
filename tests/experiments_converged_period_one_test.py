"""Tests for experiments/converged_period_one.py: when period 1 counts as converged."""

import shutil

import keras
import numpy as np
import pytest

from experiments import config_checks
from experiments import train
from experiments.configs import converged_study
from experiments.configs import converged_study_smoke
from experiments.converged_period_one import ConvergenceRule
from experiments.converged_period_one import StopAtConvergence

RULE = ConvergenceRule(
    window=2, min_relative_improvement=0.1, min_accuracy=0.99, min_epochs=3, max_epochs=8
)


def logs(losses, accuracies):
    return [{"loss": loss, "accuracy": acc} for loss, acc in zip(losses, accuracies)]


def test_plateau_needs_accuracy_and_a_loss_that_stopped_improving():
    # Epoch 4: best before the last 2 epochs 1.0, best of them 0.95: 5% < 10% -> plateau,
    # but the accuracy is 0.98. Epoch 5: best before 0.95 (epochs 1-3), recent 0.94: 1% with
    # accuracy 0.995 -> converged at epoch 5 (hand-computed).
    history = logs([2.0, 1.0, 0.95, 0.96, 0.94, 0.5], [0.5, 0.9, 0.97, 0.98, 0.995, 1.0])
    assert [RULE.converged(history[:e]) for e in range(1, 7)] == [
        False,
        False,
        False,
        False,
        True,
        False,  # 0.5 is 47% below 0.95.
    ]
    assert RULE.period_one_epochs(history) == 5
    assert RULE.period_one_epochs(history[:4]) is None  # Not decided yet.


def test_minimum_epochs_and_cap():
    flat = logs([1.0] * 8, [1.0] * 8)
    assert RULE.period_one_epochs(flat) == 3  # Flat from the start: the minimum.
    falling = logs([1.0 / 2**e for e in range(10)], [1.0] * 10)
    assert RULE.period_one_epochs(falling[:7]) is None
    assert RULE.period_one_epochs(falling) == 8  # The cap, though it never converged.
    assert not RULE.converged(falling[:8])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("window", 0, "Received: window=0"),
        ("min_accuracy", 1.5, "Received: min_accuracy=1.5"),
        ("min_relative_improvement", -0.1, "Received: min_relative_improvement=-0.1"),
        ("min_epochs", 9, "min_epochs=9, max_epochs=8"),
    ],
)
def test_invalid_rule_is_echoed(field, value, message):
    arguments = {
        "window": 2,
        "min_relative_improvement": 0.1,
        "min_accuracy": 0.99,
        "min_epochs": 3,
        "max_epochs": 8,
        field: value,
    }
    with pytest.raises(ValueError, match=message):
        ConvergenceRule(**arguments)


def test_stop_marks_the_period_end_and_stops_fit():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.zeros((4, 2), "float32")
    y = np.zeros((4,), "int32")
    rule = ConvergenceRule(
        window=1, min_relative_improvement=1.0, min_accuracy=0.0, min_epochs=3, max_epochs=9
    )
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, logs.get("period_end")))

    model.fit(x, y, epochs=9, verbose=0, callbacks=[StopAtConvergence(rule), Record()])
    # A 100% improvement threshold: converged at the first epoch the rule may call.
    assert seen == [(0, None), (1, None), (2, 1.0)]


def test_config_checks_refuse_a_converged_period_one_that_is_not_shared():
    config = converged_study.get_config()
    config_checks.validate_config(config)
    with config.unlocked():
        config.share_period_one = False
    with pytest.raises(config_checks.ConfigError, match="share_period_one=True"):
        config_checks.validate_config(config)
    with config.unlocked():
        config.share_period_one = True
        config.plan.decay_epochs = 9
    with pytest.raises(config_checks.ConfigError, match="decay_epochs=9 is longer"):
        config_checks.validate_config(config)
    with config.unlocked():
        config.plan.decay_epochs = 6
        config.converged_period_one.window = 0
    with pytest.raises(config_checks.ConfigError, match="Received: window=0"):
        config_checks.validate_config(config)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason=(
        "on TensorFlow the converged study's smoke test (experiments_study_test) runs the same "
        "loop; one run of it per backend holds the suite under its time"
    ),
)
def test_converged_period_one_is_read_back_after_a_kill(tmp_path):
    # The real loop at smoke size: period 1 until converged, then rollback and WiSE-FT from it.
    config = converged_study_smoke.get_config()
    with config.unlocked():
        del config["study"]
        config.methods = ("fine_tune", "rollback", "wise_ft")
    first = train.run_experiment(config, str(tmp_path))
    period_one = max(r["epoch"] for r in first if r["method"] == "fine_tune")
    rule = ConvergenceRule.from_config(config.converged_period_one)
    assert rule.min_epochs <= period_one <= rule.max_epochs
    assert max(r["epoch"] for r in first if r["method"] == "rollback") == 2 * period_one
    # Killed after period 1 stopped, before it was recorded finished: the rerun reads the
    # plateau back from the logs and gives the same results.
    (tmp_path / "fine_tune" / "finished.json").unlink()
    for method in ("rollback", "wise_ft"):
        shutil.rmtree(tmp_path / method)
    second = train.run_experiment(config, str(tmp_path))

    def scores(rows):
        return {(r["method"], r["epoch"]): r["mAP"] for r in rows if r["mAP"] is not None}

    assert scores(second) == pytest.approx(scores(first), abs=1e-6)
