"""Pre-trained weights through the registry, offline: the cache folder, conversion, provenance.

The torchvision file is made here from a torch copy of torchvision's ResNet-50 (real key names
and shapes, random weights), so it is not torchvision's file: tests that load it register its
SHA-256 in place of the published one, and one test checks that the published one refuses it.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_resnet import write_torchvision_checkpoint  # noqa: E402

from experiments import report  # noqa: E402
from keras_rollback._atomic_files import sha256_of_file  # noqa: E402
from keras_rollback.models import MissingWeightsError  # noqa: E402
from keras_rollback.models import backbone_preprocessing  # noqa: E402
from keras_rollback.models import build_backbone  # noqa: E402
from keras_rollback.models import get_backbone_spec  # noqa: E402
from keras_rollback.models import weights_home  # noqa: E402
from keras_rollback.models import weights_provenance  # noqa: E402

FILE = "resnet50-0676ba61.pth"


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A torchvision-format ResNet-50 state_dict and the torch model that wrote it."""
    path = tmp_path_factory.mktemp("torchvision") / FILE
    model = write_torchvision_checkpoint(path, "resnet50")
    return path, model.eval()


def use_cache(monkeypatch, home, checkpoint=None):
    """Points KERAS_ROLLBACK_HOME at `home`, with `checkpoint` (if any) in its torchvision folder
    and registered as the expected file (its SHA-256 replaces the published one)."""
    monkeypatch.setenv("KERAS_ROLLBACK_HOME", str(home))
    monkeypatch.setenv("KERAS_ROLLBACK_OFFLINE", "1")
    if checkpoint is not None:
        os.makedirs(home / "torchvision", exist_ok=True)
        os.link(checkpoint, home / "torchvision" / FILE)
        sources = get_backbone_spec("resnet50").weights["resnet50"]
        monkeypatch.setitem(
            sources,
            "torchvision_v1",
            dataclasses.replace(sources["torchvision_v1"], sha256=sha256_of_file(checkpoint)),
        )


def test_torchvision_v1_loads_through_the_registry_and_is_converted_once(
    resnet50_file, tmp_path, monkeypatch
):
    checkpoint, torch_model = resnet50_file
    use_cache(monkeypatch, tmp_path / "home", checkpoint)
    assert weights_home() == str(tmp_path / "home")
    assert backbone_preprocessing("resnet50", weights="torchvision_v1") == "torch"

    backbone = build_backbone("resnet50", weights="torchvision_v1", input_shape=(64, 32, 3))
    images = np.random.default_rng(0).normal(size=(2, 64, 32, 3)).astype("float32")
    features = keras.ops.convert_to_numpy(
        keras.ops.mean(backbone(images, training=False), axis=(1, 2))
    )
    with torch.no_grad():
        expected = torch_model.features(torch.tensor(images).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)

    manifest = json.loads((tmp_path / "home" / "manifest.json").read_text())
    assert manifest[FILE]["sha256"] == sha256_of_file(checkpoint)
    converted = tmp_path / "home" / manifest[FILE]["converted"]
    assert converted.name == "resnet50-0676ba61.weights.h5" and converted.is_file()
    # Converted once: the .pth is no longer needed.
    os.unlink(tmp_path / "home" / "torchvision" / FILE)
    again = build_backbone("resnet50", weights="torchvision_v1", input_shape=(64, 32, 3))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(again.weights[0]),
        keras.ops.convert_to_numpy(backbone.weights[0]),
    )
    provenance = weights_provenance("resnet50", "torchvision_v1")
    assert provenance["file"] == FILE and provenance["sha256"] == sha256_of_file(checkpoint)
    assert provenance["top1"] == 76.13 and provenance["kind"] == "torchvision"
    assert provenance["url"] == f"https://download.pytorch.org/models/{FILE}"


def test_a_file_that_is_not_torchvisions_is_refused(resnet50_file, tmp_path, monkeypatch):
    checkpoint, _ = resnet50_file
    use_cache(monkeypatch, tmp_path)
    os.makedirs(tmp_path / "torchvision")
    os.link(checkpoint, tmp_path / "torchvision" / FILE)
    with pytest.raises(ValueError, match=rf"{FILE}.*SHA-256 is [0-9a-f]{{64}}.*0676ba61"):
        build_backbone("resnet50", weights="torchvision_v1", input_shape=(64, 32, 3))
    assert not (tmp_path / "converted").exists()


def test_missing_file_offline_names_file_url_and_folder(tmp_path, monkeypatch):
    use_cache(monkeypatch, tmp_path / "empty")
    for call in (
        lambda: build_backbone("resnet34", weights="torchvision_v1"),
        lambda: weights_provenance("resnet34", "torchvision_v1"),
    ):
        with pytest.raises(MissingWeightsError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message
        assert "'resnet34-b627a593.pth'" in message
        assert "https://download.pytorch.org/models/resnet34-b627a593.pth" in message
        assert str(tmp_path / "empty" / "torchvision") in message


def test_keras_hub_and_keras_applications_weights_are_named_as_what_they_are():
    hub = weights_provenance("resnet50", "imagenet")
    assert hub["kind"] == "keras_hub" and hub["preset"] == "resnet_50_imagenet"
    assert "timm's resnet50.a1_in1k" in hub["description"] and hub["top1"] == 80.4
    assert weights_provenance("resnet50", "keras_hub_timm_a1") == hub
    assert "not the paper's weights" in report.weights_note(hub)
    caffe = weights_provenance("resnet50", "imagenet", source="keras_applications")
    assert caffe["kind"] == "keras_applications" and "Caffe" in caffe["description"]
    assert backbone_preprocessing("resnet50", "keras_applications", "imagenet") == "caffe"
    assert weights_provenance("inception_v3", "imagenet")["preprocessing"] == "tf"
    assert weights_provenance("resnet50", None)["weights"] is None
    with pytest.raises(ValueError, match="No weights 'torchvision_v1' for inception_v3"):
        build_backbone("inception_v3", weights="torchvision_v1")


def test_weight_file_provenance_is_its_path_and_hash(tmp_path):
    backbone = build_backbone("resnet18", input_shape=(32, 32, 3))
    path = tmp_path / "mine.weights.h5"
    backbone.save_weights(path)
    record = weights_provenance("resnet18", str(path))
    assert record["file"] == str(path) and record["sha256"] == sha256_of_file(path)


@pytest.mark.network
@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_torchvision_v1_downloads_checks_and_loads(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_ROLLBACK_HOME", str(tmp_path))
    backbone = build_backbone(arch, weights="torchvision_v1", input_shape=(128, 64, 3))
    record = weights_provenance(arch, "torchvision_v1")
    assert record["sha256"].startswith(record["file_name"].split("-")[1].split(".")[0])
    features = backbone(np.zeros((1, 128, 64, 3), "float32"))
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(features)))
