"""Smoke test of experiments/configs/bot.py: the Bag of Tricks recipe with rolling back."""

import json

from experiments import train
from experiments.configs import bot
from experiments.configs import smoke


def tiny_bot_config():
    """bot.py's recipe on smoke.py's data, model size and schedule."""
    config = bot.get_config()
    tiny = smoke.get_config()
    for section in ("dataset", "synthetic", "plan", "evaluation"):
        config[section] = tiny[section]
    config.model.backbone = tiny.model.backbone
    config.model.weights = ""
    config.image_size = tiny.image_size
    config.sampler.identities_per_batch = 2
    config.sampler.images_per_identity = 2
    config.augmentation.random_crop_padding = 2
    config.methods = ("rollback",)
    return config


def test_bot_recipe_trains_with_rollback_and_evaluates_after_the_bnneck(tmp_path):
    config = tiny_bot_config()
    rows = train.run_experiment(config, str(tmp_path))
    evaluated = [row for row in rows if row["mAP"] is not None]
    assert [row["period"] for row in evaluated] == [1, 2]
    assert all(0.0 <= row["mAP"] <= 1.0 for row in evaluated)
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert recorded["model"]["neck"] == "bnneck" and recorded["loss"]["triplet_weight"] == 1.0
    epochs = [json.loads(line) for line in (tmp_path / "rollback" / "epochs.jsonl").open()]
    # Period 2 (epoch 1) rolled back and restarted the learning rates: the same callback.
    assert [e["period"] for e in epochs] == [1, 2]
    assert epochs[1]["lr_head"] == config.plan.refine_head_learning_rate
