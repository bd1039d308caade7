"""Smoke test of the multi-seed study: the real loop on tiny data for two seeds, summarised."""

import json

import keras
import numpy as np
import pytest

from experiments import study
from experiments.configs import converged_study_smoke
from experiments.configs import study_smoke
from keras_rollback import BlockPartition
from keras_rollback.models import load_model_file
from keras_rollback.pretrained_snapshot import PretrainedSnapshot

# The studies only orchestrate runs and summarise them: the training, branching and evaluation
# they drive run on every backend in experiments_main_test and
# experiments_converged_period_one_test. Kept off the other two backends to hold the suite's time.
ORCHESTRATION_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the study only orchestrates runs tested on every backend elsewhere",
)


def test_interval_is_the_t_interval():
    mean, half, n = study.interval([1.0, 2.0, 3.0])
    # t(0.975, 2 degrees of freedom) = 4.302653; sample sd = 1.
    np.testing.assert_allclose((mean, half, n), (2.0, 4.302653 / np.sqrt(3), 3), rtol=1e-6)
    assert np.isnan(study.interval([5.0])[1])


@ORCHESTRATION_ONLY
def test_study_smoke_run_summarises_every_seed(tmp_path):
    config = study_smoke.get_config()
    summary = study.run_study(config, str(tmp_path))

    for name in ("config.json", "study.json", "study.md", "drift.png"):
        assert (tmp_path / name).is_file(), name
    seeds = list(config.study.seeds)
    finals = {}
    for seed in seeds:
        rows = json.loads((tmp_path / f"seed-{seed}" / "results.json").read_text())
        for row in rows:
            if row["mAP"] is not None:
                finals[(row["method"], seed)] = row
    cells = {(c["method"], c["period"]): c for c in summary["periods"]}
    for method in config.methods:
        assert cells[(method, 1)]["mAP"][2] == len(seeds)
    # The paired differences, recomputed from each seed's own result file.
    difference = next(d for d in summary["differences"] if d["difference"] == "rollback - base_cy")
    expected = [
        round(100 * (finals[("rollback", s)]["mAP"] - finals[("base_cy", s)]["mAP"]), 2)
        for s in seeds
    ]
    assert difference["mAP_per_seed"] == expected
    np.testing.assert_allclose(difference["mAP"][0], np.mean(expected), atol=0.01)
    table = (tmp_path / "study.md").read_text()
    assert "rollback - base_cy" in table and "plateau_rollback" in table
    assert set(summary["drift"]) == set(config.methods)


@ORCHESTRATION_ONLY
def test_converged_study_smoke_run(tmp_path):
    config = converged_study_smoke.get_config()
    summary = study.run_study(config, str(tmp_path))

    rule = config.converged_period_one
    seeds = list(config.study.seeds)
    assert [row["seed"] for row in summary["period_one"]] == seeds
    for row in summary["period_one"]:
        assert rule.min_epochs <= row["epochs"] <= rule.max_epochs
        run = tmp_path / f"seed-{row['seed']}"
        rows = json.loads((run / "results.json").read_text())
        ends = {r["method"]: r["epoch"] for r in rows if r["mAP"] is not None}
        # Later periods are as long as the measured period 1.
        assert ends["fine_tune"] == row["epochs"]
        assert ends["rollback"] == ends["base_cy"] == ends["l2_sp"] == 2 * row["epochs"]
        assert ends["lp_ft"] == config.plan.warmup_epochs + row["epochs"]
        assert ends["wise_ft"] == row["epochs"]
        # WiSE-FT is period 1's weights mixed half and half with the pre-trained ones.
        fine_tuned = load_model_file(run / "fine_tune" / "model.keras")
        mixed = load_model_file(run / "wise_ft" / "model.keras")
        partition = BlockPartition.for_model(mixed)
        pretrained = PretrainedSnapshot.load(run / "wise_ft" / "pretrained.npz", partition)
        tuned = {w.path: w.numpy() for w in fine_tuned.weights}
        checked = 0
        for weight in mixed.weights:
            if weight.path in pretrained.arrays and "float" in str(weight.dtype):
                expected = 0.5 * pretrained.arrays[weight.path] + 0.5 * tuned[weight.path]
                np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6, atol=1e-6)
                checked += 1
        assert checked > 50
    assert summary["source_task"]["identities"] == config.pretrain.num_identities
    table = (tmp_path / "study.md").read_text()
    assert "| seed | period 1 epochs | converged |" in table
    assert "wise_ft_depth_scaled - rollback" in table and "lp_ft - base_cy" in table
