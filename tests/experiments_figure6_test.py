"""Smoke test of Figure 6: maps and foreground shares of two saved models, from work dirs."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from experiments import figure6
from experiments import workdir as workdir_lib
from experiments.configs import figure6 as figure6_config
from experiments.configs import smoke
from keras_rollback import _atomic_files
from keras_rollback.data import synthetic

METHODS = ("fine_tune", "rollback")


def tiny_model(seed, image_shape):
    """A nested backbone (stride 2 twice: 8x4 maps on 32x16 images) and a head."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(image_shape)
    x = layers.Conv2D(4, 3, strides=2, padding="same", name="b1_conv")(inputs)
    x = layers.ReLU(name="b1_relu")(layers.BatchNormalization(name="b1_bn")(x))
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="b2_conv")(x)
    x = layers.ReLU(name="b2_out")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    images = keras.Input(image_shape, name="images")
    pooled = layers.GlobalAveragePooling2D(name="pooled_feature")(backbone(images))
    return keras.Model(images, layers.Dense(4, name="classifier")(pooled), name="tiny")


def make_run(folder, seed):
    """A work dir as experiments.main leaves it: config.json, the synthetic dataset and
    <method>/model.keras for both methods (tiny untrained models, one seed each)."""
    config = smoke.get_config()
    config.methods = METHODS
    config.seed = seed
    os.makedirs(folder)
    record = {**json.loads(config.to_json()), "backend": keras.config.backend()}
    _atomic_files.write_json(os.path.join(folder, "config.json"), record)
    workdir_lib.synthetic_dataset(
        os.path.join(folder, "synthetic-market1501"), seed=seed, **config.synthetic
    )
    for offset, method in enumerate(METHODS):
        os.makedirs(os.path.join(folder, method))
        model = tiny_model(10 * seed + offset, (*config.image_size, 3))
        workdir_lib.save_model(model, os.path.join(folder, method, "model.keras"))
    return str(folder)


def figure6_settings(runs, **fields):
    config = figure6_config.get_config()
    config.figure6.runs = ",".join(runs)
    config.figure6.num_images = 3
    for name, value in fields.items():
        config.figure6[name] = value
    return config


def test_two_saved_models_give_the_picture_and_the_shares(tmp_path):
    runs = [make_run(tmp_path / f"seed-{seed}", seed) for seed in (0, 1)]
    out = tmp_path / "figure6"
    content = figure6.run_figure6(figure6_settings(runs), str(out))

    assert (out / "config.json").is_file()
    with Image.open(out / figure6.PICTURE) as picture:
        assert picture.format == "PNG"
    assert json.loads((out / figure6.RESULTS).read_text()) == content
    assert content["layer"] == "b2_out"
    assert [run["run"] for run in content["runs"]] == runs
    for run in content["runs"]:
        assert run["feature_map_size"] == [8, 4] and run["image_size"] == [32, 16]
        assert len(run["images"]) == 8  # Smoke: 4 test identities x 2 cameras.
        for image in run["images"]:
            assert all(0 <= image["share"][m] <= 1 for m in METHODS)
            assert 0 < image["person_area"] < 1
    # The per-run summary is the mean over that run's images; over runs, over their means.
    per_run = content["summary"]["per_run"]
    for run, entry in zip(content["runs"], per_run):
        shares = [image["share"]["rollback"] for image in run["images"]]
        np.testing.assert_allclose(entry["shares"]["rollback"]["mean"], np.mean(shares))
        assert entry["shares"]["rollback"]["n"] == 8
        difference = [i["share"]["rollback"] - i["share"]["fine_tune"] for i in run["images"]]
        np.testing.assert_allclose(entry["difference"]["mean"], np.mean(difference))
    over = content["summary"]["over_runs"]
    assert over["runs"] == 2
    np.testing.assert_allclose(
        over["shares"]["fine_tune"]["mean"],
        np.mean([entry["shares"]["fine_tune"]["mean"] for entry in per_run]),
    )


def test_shares_are_those_of_the_generators_masks(tmp_path):
    run = make_run(tmp_path / "run", seed=0)
    content = figure6.run_figure6(figure6_settings([run], max_images=2), str(tmp_path / "out"))
    images = content["runs"][0]["images"]
    assert len(images) == 2
    root = os.path.join(run, "synthetic-market1501")
    masks = synthetic.synthetic_person_masks(root, [image["path"] for image in images])
    for image in images:
        np.testing.assert_allclose(image["person_area"], masks[image["path"]].mean())
    assert content["summary"]["over_runs"] is None  # One run: intervals over images only.


def test_real_market1501_crops_give_maps_without_shares(tmp_path, mini_market1501):
    run = make_run(tmp_path / "run", seed=0)
    config = figure6_settings([run], dataset_root=str(mini_market1501))
    content = figure6.run_figure6(config, str(tmp_path / "out"))
    images = content["runs"][0]["images"]
    assert len(images) == 32
    assert all(image["share"] is None and image["person_area"] is None for image in images)
    assert all(image["path"].startswith(str(mini_market1501)) for image in images)
    assert (tmp_path / "out" / figure6.PICTURE).is_file()
    line = figure6.summary_line(content["summary"], METHODS, content["runs"], "out")
    assert "no person masks" in line


def test_a_missing_model_or_no_run_is_a_clear_error(tmp_path):
    with pytest.raises(figure6.Figure6Error, match=r"config\.figure6\.runs"):
        figure6.run_figure6(figure6_settings([]), str(tmp_path / "out"))
    run = make_run(tmp_path / "run", seed=0)
    config = figure6_settings([run])
    config.figure6.methods = ("fine_tune", "base_cy")
    with pytest.raises(figure6.Figure6Error, match=r"base_cy/model.keras' does not exist"):
        figure6.run_figure6(config, str(tmp_path / "out"))
