"""Smoke test of the experiment runner: the real loop, tiny data, a step per epoch."""

import json

import pytest

from experiments import config_checks
from experiments import methods
from experiments import shared_period_one
from experiments import train
from experiments.configs import smoke
from keras_rollback import RefinePlan
from keras_rollback import _atomic_files
from keras_rollback.metrics import ranking


def test_smoke_run_writes_every_result_file(tmp_path):
    config = smoke.get_config()
    rows = train.run_experiment(config, str(tmp_path))

    for name in (
        "config.json",
        "results.csv",
        "results.json",
        "curves.png",
        "drift.png",
        "comparison.md",
    ):
        assert (tmp_path / name).is_file(), name
    for method in config.methods:
        folder = tmp_path / method
        for name in ("pretrained.npz", "epochs.jsonl", "cmc.png", "ranked_list.png"):
            assert (folder / name).is_file(), f"{method}/{name}"
        assert any((folder / "tensorboard").rglob("events.out.tfevents*"))
        last_epoch = (folder / "epochs.jsonl").read_text().splitlines()[-1]
        assert {"drift_conv2_x", "grad_norm_conv2_x", "grad_norm_head"} <= set(
            json.loads(last_epoch)
        )
    assert json.loads((tmp_path / "config.json").read_text())["plan"]["periods"] == 2
    evaluated = [r for r in rows if r["mAP"] is not None]
    assert [(r["method"], r["period"]) for r in evaluated] == [
        ("rollback", 1),
        ("rollback", 2),
        ("base_cy", 1),
        ("base_cy", 2),
    ]
    assert all(0.0 <= r["mAP"] <= 1.0 and 0.0 <= r["rank1"] <= 1.0 for r in evaluated)
    # Period 1 is the same fine-tuning for both methods (same seed, same data order).
    assert abs(evaluated[0]["loss"] - evaluated[2]["loss"]) <= 1e-5 * abs(evaluated[0]["loss"])
    table = (tmp_path / "comparison.md").read_text()
    assert "rollback mAP / rank1" in table and "base_cy mAP / rank1" in table
    assert "(paper)" not in table  # The paper has no numbers for the synthetic task.

    # Period 1 was trained once, in fine_tune/ (not reported: not one of the methods), and
    # both methods branched from a byte copy of its checkpoint (experiments/shared_period_one.py).
    assert (tmp_path / "fine_tune" / "finished.json").is_file()
    period_one = {
        _atomic_files.sha256_of_file(tmp_path / m / "checkpoints" / "epoch-000001.weights.h5")
        for m in ("fine_tune", "rollback", "base_cy")
    }
    assert len(period_one) == 1
    # Branching again (a rerun) keeps the method's own checkpoints.
    assert shared_period_one.branch(str(tmp_path / "fine_tune"), str(tmp_path / "rollback")) == 2

    # A method trained alone, period 1 included, gives the same results as branched.
    config.methods, config.share_period_one = ("rollback",), False
    alone = train.run_experiment(config, str(tmp_path / "alone"))
    assert not (tmp_path / "alone" / "fine_tune").exists()
    columns = ("period", "epoch", "loss", "rank1", "mAP", "mINP")
    branched = [[r[c] for c in columns] for r in rows if r["method"] == "rollback"]
    assert [[r[c] for c in columns] for r in alone] == branched


def test_rerunning_a_finished_experiment_reads_its_results(tmp_path, monkeypatch):
    config = smoke.get_config()
    config.methods = ("fine_tune",)
    first = train.run_experiment(config, str(tmp_path))

    def fail(*args, **kwargs):
        raise AssertionError("a finished method was trained again")

    monkeypatch.setattr(train, "train_and_evaluate", fail)
    assert train.run_experiment(config, str(tmp_path)) == first


def test_rerank_option_scores_and_draws_the_reranked_ranking(tmp_path, monkeypatch):
    config = smoke.get_config()
    config.methods = ("fine_tune",)
    config.evaluation.rerank = True
    calls = []

    def recording(function, name):
        def wrapper(*args, **kwargs):
            calls.append((name, kwargs.get("rerank")))
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        train, "k_reciprocal_rerank", recording(train.k_reciprocal_rerank, "picture")
    )
    monkeypatch.setattr(
        ranking,
        "ranking_scores_from_features",
        recording(ranking.ranking_scores_from_features, "scores"),
    )
    rows = train.run_experiment(config, str(tmp_path))
    evaluated = [r for r in rows if r["mAP"] is not None]
    assert evaluated and all(0.0 <= r["mAP"] <= 1.0 for r in evaluated)
    assert ("scores", True) in calls and ("scores", False) not in calls
    assert ("picture", None) in calls, "the ranked list was not drawn from re-ranked distances"
    assert (tmp_path / "fine_tune" / "ranked_list.png").is_file()


def test_classification_task_reports_top1_accuracy(tmp_path, monkeypatch):
    """Table 6's path, with a small in-memory dataset standing in for TensorFlow Datasets."""
    import numpy as np
    import tensorflow as tf

    from keras_rollback.data import FineGrainedDataset

    def load_tfds_fine_grained(name, *, data_dir, transform, batch_size, seed):
        rng = np.random.default_rng(seed)
        images = rng.normal(size=(16, *transform.image_size, 3)).astype("float32")
        split = tf.data.Dataset.from_tensor_slices((images, np.arange(16) % 4)).batch(batch_size)
        return FineGrainedDataset(name, split, split, 4, ("a", "b", "c", "d"))

    monkeypatch.setattr(train.reid_data, "load_tfds_fine_grained", load_tfds_fine_grained)
    config = smoke.get_config()
    config.task = "classification"
    config.dataset.name = "caltech_birds2011"
    config.methods = ("rollback",)
    rows = train.run_experiment(config, str(tmp_path))
    evaluated = [r for r in rows if r["top1"] is not None]
    assert [r["period"] for r in evaluated] == [1, 2]
    assert all(0.0 <= r["top1"] <= 1.0 for r in evaluated)
    assert "rollback top1 (paper)" in (tmp_path / "comparison.md").read_text()
    assert "(74.59)" in (tmp_path / "comparison.md").read_text()  # Table 6's baseline, period 1


def test_methods_that_share_period_one():
    sharing = [
        "rollback",
        "base_cy",
        "fine_tune",
        "keep_block:conv3_x",
        "l2_sp",
        "wise_ft",
        "wise_ft_depth_scaled",
    ]
    assert all(shared_period_one.shares_period_one(m) for m in sharing)
    assert not any(
        shared_period_one.shares_period_one(m) for m in ("fc_warmup", "lp_ft", "plateau_rollback")
    )


def test_alternatives_as_experiment_methods():
    plan_config = smoke.get_config().plan
    assert methods.plan_for("lp_ft", plan_config) == RefinePlan.linear_probe_then_fine_tune(
        probe_epochs=plan_config.warmup_epochs,
        fine_tune_epochs=plan_config.period_epochs,
        learning_rate=plan_config.learning_rate,
        head_learning_rate=plan_config.head_learning_rate,
        decay_epochs=plan_config.decay_epochs,
        decay_factor=plan_config.decay_factor,
        layer_decay=plan_config.layer_decay,
    )
    assert methods.plan_for("l2_sp", plan_config) == methods.plan_for("base_cy", plan_config)
    assert methods.plan_for("wise_ft", plan_config) == methods.plan_for("fine_tune", plan_config)
    config = smoke.get_config()
    l2_sp = methods.method_config("l2_sp", config)
    assert l2_sp.optimizer.weight_decay == 0.0 and config.optimizer.weight_decay == 5e-4
    assert methods.method_config("rollback", config) is config
    with config.unlocked():
        config.methods = ("wise_ft",)
        config.share_period_one = False
    with pytest.raises(config_checks.ConfigError, match="continue from the shared period 1"):
        config_checks.validate_config(config)
