"""Tests of keras_rollback/models/convert_torchvision.py: the checkpoint converter and its CLI."""

import subprocess
import sys

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keras_rollback.models.backbones import build_backbone  # noqa: E402
from keras_rollback.models.convert_torchvision import convert_torchvision_checkpoint  # noqa: E402
from keras_rollback.models.torchvision_resnet import keras_hub_resnet  # noqa: E402
from keras_rollback.models.torchvision_weights import torchvision_name_map  # noqa: E402


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory):
    """A random torchvision-named ResNet-18 state_dict (fc included) saved with torch.save."""
    rng = np.random.default_rng(0)
    backbone = keras_hub_resnet("resnet18")
    shapes = {w.path: tuple(w.shape) for w in backbone.weights}
    state = {}
    for weight_path, name in torchvision_name_map(backbone).items():
        shape = shapes[weight_path]
        torch_shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
        state[name] = torch.from_numpy(rng.uniform(0.5, 1.5, torch_shape).astype("float32"))
        if name.endswith("running_var"):
            state[name.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path_factory.mktemp("checkpoints") / "resnet18.pth"
    torch.save(state, path)
    return path, state


def _assert_backbone_holds(backbone, state):
    weights = {w.path: keras.ops.convert_to_numpy(w) for w in backbone.weights}
    np.testing.assert_array_equal(
        weights["conv1_conv/kernel"], state["conv1.weight"].numpy().transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        weights["stack3_block1_2_bn/moving_mean"], state["layer4.1.bn2.running_mean"].numpy()
    )
    np.testing.assert_array_equal(
        weights["stack1_block0_0_bn/gamma"], state["layer2.0.downsample.1.weight"].numpy()
    )


def test_convert_then_build_from_either_file(resnet18_checkpoint, tmp_path):
    checkpoint, state = resnet18_checkpoint
    output = tmp_path / "resnet18.weights.h5"
    convert_torchvision_checkpoint("resnet18", checkpoint, output)
    _assert_backbone_holds(
        build_backbone("resnet18", weights=output, input_shape=(64, 32, 3)), state
    )
    _assert_backbone_holds(build_backbone("resnet18", weights=checkpoint), state)


def test_cli_writes_a_loadable_weights_file(resnet18_checkpoint, tmp_path):
    checkpoint, state = resnet18_checkpoint
    output = tmp_path / "cli.weights.h5"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_rollback.models.convert_torchvision",
            "--arch",
            "resnet18",
            "--input",
            str(checkpoint),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_backbone_holds(build_backbone("resnet18", weights=output), state)


def test_wrong_architecture_or_output_writes_nothing(resnet18_checkpoint, tmp_path):
    checkpoint, _ = resnet18_checkpoint
    with pytest.raises(ValueError, match=r"nothing was loaded.*layer1\.2\.conv1\.weight"):
        convert_torchvision_checkpoint("resnet34", checkpoint, tmp_path / "wrong.weights.h5")
    assert not (tmp_path / "wrong.weights.h5").exists()
    with pytest.raises(ValueError, match="Received: output_path="):
        convert_torchvision_checkpoint("resnet18", checkpoint, tmp_path / "out.h5")
