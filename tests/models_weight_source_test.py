"""Pre-trained weights through the registry, offline: the cache folder, conversion, provenance.

The torchvision file is made here from a torch copy of torchvision's ResNet-50 (real key names
and shapes, random weights), so it is not torchvision's file: tests that load it register its
SHA-256 in place of the published one, and one test checks that the published one refuses it.
The safetensors copy (timm's `resnet18.tv_in1k` layout) is written from a keras-hub ResNet-18
with numpy and the safetensors package, and loaded in a process where `import torch` fails.
"""

import dataclasses
import json
import os
import re
import site
import subprocess
import sys

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import report
from keras_rollback._atomic_files import sha256_of_file
from keras_rollback.models import MissingWeightsError
from keras_rollback.models import backbone_preprocessing
from keras_rollback.models import build_backbone
from keras_rollback.models import get_backbone_spec
from keras_rollback.models import torchvision_name_map
from keras_rollback.models import weights_home
from keras_rollback.models import weights_provenance

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE = "resnet50-0676ba61.pth"


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A torchvision-format ResNet-50 state_dict and the torch model that wrote it."""
    pytest.importorskip("torch")
    from torch_resnet import write_torchvision_checkpoint

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
    torch = pytest.importorskip("torch")
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


def _assert_names_both_routes(message, folder):
    """One paragraph naming the .pth and the safetensors file, their urls and the folder."""
    assert "\n" not in message
    assert "'resnet34-b627a593.pth'" in message
    assert "https://download.pytorch.org/models/resnet34-b627a593.pth" in message
    assert "'resnet34.tv_in1k.safetensors'" in message
    assert "https://huggingface.co/timm/resnet34.tv_in1k/resolve/main/model.safetensors" in message
    assert str(folder) in message


def test_missing_file_offline_names_both_files_urls_and_folder(tmp_path, monkeypatch):
    use_cache(monkeypatch, tmp_path / "empty")
    for call in (
        lambda: build_backbone("resnet34", weights="torchvision_v1"),
        lambda: weights_provenance("resnet34", "torchvision_v1"),
    ):
        with pytest.raises(MissingWeightsError) as error:
            call()
        _assert_names_both_routes(str(error.value), tmp_path / "empty" / "torchvision")


def test_without_torch_the_safetensors_copy_comes_first(tmp_path, monkeypatch):
    # As without torch installed: `import torch` raises ImportError, find_spec finds nothing.
    monkeypatch.setitem(sys.modules, "torch", None)
    use_cache(monkeypatch, tmp_path)
    with pytest.raises(MissingWeightsError) as error:
        weights_provenance("resnet34", "torchvision_v1")
    message = str(error.value)
    _assert_names_both_routes(message, tmp_path / "torchvision")
    assert message.startswith(
        f"Pre-trained weights file 'resnet34.tv_in1k.safetensors' is not in {tmp_path / 'torchvision'}"
    )
    # A .pth in the cache is not read without torch: the error says why it is not enough.
    os.makedirs(tmp_path / "torchvision")
    (tmp_path / "torchvision" / "resnet34-b627a593.pth").write_bytes(b"")
    with pytest.raises(
        MissingWeightsError, match=r"'resnet34-b627a593\.pth' is there, but reading"
    ):
        weights_provenance("resnet34", "torchvision_v1")


def write_timm_safetensors(path, backbone):
    """Writes `backbone`'s weights as timm's `tv_in1k` file does: torchvision's names and layout.

    With the classifier (`fc.*`) and BatchNorm's `num_batches_tracked` counters, which
    timm's files hold and the loader ignores.
    """
    state = {}
    for weight in backbone.weights:
        value = keras.ops.convert_to_numpy(weight)
        state[torchvision_name_map(backbone)[weight.path]] = (
            value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
        )
    for name in list(state):
        if name.endswith(".running_var"):
            state[name.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
    state["fc.weight"] = np.zeros((1000, backbone.output_shape[-1]), np.float32)
    state["fc.bias"] = np.zeros((1000,), np.float32)
    save_file({n: np.ascontiguousarray(v) for n, v in state.items()}, path, {"format": "pt"})


@pytest.fixture(scope="module")
def resnet18_safetensors(tmp_path_factory):
    """A safetensors file in timm's `resnet18.tv_in1k` layout and the weights it holds."""
    backbone = build_backbone("resnet18", input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    for weight in backbone.weights:  # Distinct values everywhere, variances positive.
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype))
    path = tmp_path_factory.mktemp("timm") / "resnet18.tv_in1k.safetensors"
    write_timm_safetensors(path, backbone)
    return path, [keras.ops.convert_to_numpy(w) for w in backbone.weights]


@pytest.fixture(scope="module")
def site_dirs_without_torch(tmp_path_factory):
    """This interpreter's site-packages folders with torch left out, as in an install without it.

    A folder holding torch is mirrored by symbolic links to everything else in it.
    (`sys.modules["torch"] = None` is no substitute: scipy then fails on `None.Tensor`.)
    """
    dirs = []
    for site_dir in [*site.getsitepackages(), site.getusersitepackages()]:
        if not os.path.isdir(os.path.join(site_dir, "torch")):
            dirs.append(site_dir)
            continue
        mirror = tmp_path_factory.mktemp("site-packages-without-torch")
        for name in os.listdir(site_dir):
            if not re.match(r"(torch|functorch|torchgen)([-.]|$)", name):
                os.symlink(os.path.join(site_dir, name), mirror / name)
        dirs.append(str(mirror))
    return [d for d in dirs if os.path.isdir(d)]


# Run by `python -S` with the site folders given in argv[1]: torch is not installed there. The
# file is not timm's: its SHA-256 is registered in place of the published one.
_LOAD_WITHOUT_TORCH = """
import importlib.util, json, site, sys
for site_dir in json.loads(sys.argv[1]):
    site.addsitedir(site_dir)
assert importlib.util.find_spec("torch") is None, "torch is importable"
import dataclasses
import keras
import numpy as np
from keras_rollback.models import build_backbone, get_backbone_spec, weights_provenance
sources = get_backbone_spec("resnet18").weights["resnet18"]
sources["torchvision_v1"] = dataclasses.replace(
    sources["torchvision_v1"], safetensors_sha256=sys.argv[2]
)
backbone = build_backbone("resnet18", weights="torchvision_v1", input_shape=(32, 32, 3))
np.savez(sys.argv[3], *[keras.ops.convert_to_numpy(w) for w in backbone.weights])
print(json.dumps(weights_provenance("resnet18", "torchvision_v1")))
assert "torch" not in sys.modules
"""


def test_safetensors_copy_loads_exactly_without_torch(
    resnet18_safetensors, site_dirs_without_torch, tmp_path
):
    backend = keras.backend.backend()
    if backend == "torch":
        pytest.skip("the torch backend needs torch; run on tensorflow or jax")
    checkpoint, expected = resnet18_safetensors
    home = tmp_path / "home"
    os.makedirs(home / "torchvision")
    os.link(checkpoint, home / "torchvision" / checkpoint.name)
    digest = sha256_of_file(checkpoint)
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "KERAS_ROLLBACK_HOME": str(home),
        "KERAS_ROLLBACK_OFFLINE": "1",
        "PYTHONPATH": REPO_ROOT,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            _LOAD_WITHOUT_TORCH,
            json.dumps(site_dirs_without_torch),
            digest,
            tmp_path / "weights.npz",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    loaded = np.load(tmp_path / "weights.npz")
    assert len(loaded.files) == len(expected)
    for k, value in enumerate(expected):
        np.testing.assert_array_equal(loaded[f"arr_{k}"], value)
    provenance = json.loads(result.stdout.strip().splitlines()[-1])
    assert provenance["weights"] == "torchvision_v1" and provenance["top1"] == 69.758
    assert provenance["file"] == provenance["file_name"] == "resnet18.tv_in1k.safetensors"
    assert provenance["url"] == (
        "https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors"
    )
    assert provenance["sha256"] == digest
    manifest = json.loads((home / "manifest.json").read_text())
    entry = manifest["resnet18.tv_in1k.safetensors"]
    assert entry["sha256"] == digest
    assert entry["converted"] == os.path.join("converted", "resnet18.tv_in1k.weights.h5")
    assert (home / entry["converted"]).is_file()


def test_safetensors_copy_is_checked_against_the_published_sha256(
    resnet18_safetensors, tmp_path, monkeypatch
):
    checkpoint, _ = resnet18_safetensors
    use_cache(monkeypatch, tmp_path)
    os.makedirs(tmp_path / "torchvision")
    os.link(checkpoint, tmp_path / "torchvision" / checkpoint.name)
    with pytest.raises(
        ValueError, match=r"resnet18\.tv_in1k\.safetensors.*694f673df6520a31"
    ) as error:
        weights_provenance("resnet18", "torchvision_v1")
    assert "huggingface.co/timm/resnet18.tv_in1k" in str(error.value)


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


@pytest.mark.network
@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_timm_safetensors_copy_holds_torchvisions_weights(arch, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    source = get_backbone_spec(arch).weight_source(arch, "torchvision_v1")
    monkeypatch.setenv("KERAS_ROLLBACK_HOME", str(tmp_path / "pth"))
    from_pth = build_backbone(arch, weights="torchvision_v1", input_shape=(64, 32, 3))
    # A cache holding only the safetensors copy reads it, torch or not.
    keras.utils.get_file(
        source.safetensors_file,
        source.safetensors_url,
        cache_dir=str(tmp_path / "safetensors"),
        cache_subdir="torchvision",
    )
    monkeypatch.setenv("KERAS_ROLLBACK_HOME", str(tmp_path / "safetensors"))
    from_safetensors = build_backbone(arch, weights="torchvision_v1", input_shape=(64, 32, 3))
    record = weights_provenance(arch, "torchvision_v1")
    assert record["file"] == source.safetensors_file
    if source.safetensors_sha256 is not None:
        assert record["sha256"] == source.safetensors_sha256
    for a, b in zip(from_pth.weights, from_safetensors.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
