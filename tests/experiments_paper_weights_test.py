"""The paper configs with the authors' weights: Table 2 from a torchvision file in the cache
folder, and the clear error (no traceback) when the cache is empty and the machine offline."""

import json

import pytest

pytest.importorskip("torch")

from experiments import train


def _table2_one_step(root):
    """Table 2's config, shrunk to one step of one period on the 32 real training images."""
    from experiments.configs import table2

    config = table2.get_config("market1501")
    config.dataset.root = str(root)
    config.image_size = (64, 32)
    config.methods = ("rollback",)
    config.plan.period_epochs = 1
    config.plan.decay_epochs = 1  # No decay inside the one-epoch period (checked before training).
    config.plan.periods = 1
    config.evaluation.every_epochs = 0
    config.evaluation.ranked_list_queries = 1
    return config


def test_table2_trains_from_the_torchvision_file_in_the_cache(
    mini_market1501, tmp_path, monkeypatch
):
    """The paper's weights by default: a torchvision-format ResNet-50 file in KERAS_ROLLBACK_HOME
    (made here, real key names and shapes) loads through the registry, and the run records it."""
    from models_weight_source_test import FILE
    from models_weight_source_test import use_cache
    from torch_resnet import write_torchvision_checkpoint

    from keras_rollback._atomic_files import sha256_of_file

    checkpoint = tmp_path / FILE
    write_torchvision_checkpoint(checkpoint, "resnet50")
    use_cache(monkeypatch, tmp_path / "home", checkpoint)
    config = _table2_one_step(mini_market1501)
    assert config.model.weights == "torchvision_v1"
    rows = train.run_experiment(config, str(tmp_path / "run"))

    digest = sha256_of_file(checkpoint)
    assert rows and all(
        (r["weights"], r["weights_file"], r["weights_sha256"]) == ("torchvision_v1", FILE, digest)
        for r in rows
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results[-1]["weights_file"] == FILE and results[-1]["weights_sha256"] == digest
    recorded = json.loads((tmp_path / "run" / "weights.json").read_text())
    assert recorded["preprocessing"] == "torch" and recorded["sha256"] == digest
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["weights"] == (
        "torchvision_v1"
    )
    comparison = (tmp_path / "run" / "comparison.md").read_text()
    assert f"file {FILE}, SHA-256 {digest}" in comparison


def test_table2_with_an_empty_cache_exits_naming_the_file_to_download(mini_market1501, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_ROLLBACK_HOME=str(tmp_path / "empty"), KERAS_ROLLBACK_OFFLINE="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.main",
            "--config=experiments/configs/table2.py:market1501",
            f"--config.dataset.root={mini_market1501}",
            f"--workdir={tmp_path / 'run'}",
        ],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "resnet50-0676ba61.pth" in result.stderr
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in result.stderr
    assert str(tmp_path / "empty" / "torchvision") in result.stderr
