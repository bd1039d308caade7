"""Smoke test of the multi-seed study: the real loop on tiny data for two seeds, summarised."""

import json

import keras
import numpy as np
import pytest

from experiments import study
from experiments.configs import study_smoke


def test_interval_is_the_t_interval():
    mean, half, n = study.interval([1.0, 2.0, 3.0])
    # t(0.975, 2 degrees of freedom) = 4.302653; sample sd = 1.
    np.testing.assert_allclose((mean, half, n), (2.0, 4.302653 / np.sqrt(3), 3), rtol=1e-6)
    assert np.isnan(study.interval([5.0])[1])


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason=(
        "the study only orchestrates runs and summarises them; the training and evaluation it "
        "drives run on every backend in experiments_main_test (kept off the other two backends "
        "to hold the suite under 30 minutes)"
    ),
)
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
