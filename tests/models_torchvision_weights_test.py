"""Tests of keras_rollback/models/torchvision_weights.py against a torch definition of torchvision's ResNet."""

import json
import struct
import sys

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from torch_resnet import torch_resnet  # noqa: E402

from keras_rollback.models.torchvision_resnet import keras_hub_resnet  # noqa: E402
from keras_rollback.models.torchvision_weights import load_torchvision_weights  # noqa: E402
from keras_rollback.models.torchvision_weights import read_state_dict  # noqa: E402
from keras_rollback.models.torchvision_weights import torchvision_name_map  # noqa: E402


def _keras_features(backbone, images):
    return keras.ops.convert_to_numpy(keras.ops.mean(backbone(images, training=False), axis=(1, 2)))


def _weights_by_path(model):
    return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}


@pytest.mark.parametrize(
    "arch,blocks,widths",
    [
        ("resnet34", (2, 2, 1, 1), (64, 32, 32, 16)),  # basic blocks
        ("resnet50", (2, 1, 2, 1), (64, 32, 32, 16)),  # bottlenecks
    ],
)
def test_converted_features_match_torch(arch, blocks, widths):
    torch_model = torch_resnet(arch, blocks, widths)
    images = np.random.default_rng(0).normal(size=(2, 64, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = torch_model.features(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()

    backbone = keras_hub_resnet(arch, input_shape=(64, 32, 3), widths=widths, blocks=blocks)
    load_torchvision_weights(backbone, torch_model.state_dict())
    actual = _keras_features(backbone, images)

    assert actual.shape == expected.shape == (2, widths[-1] * (1 if arch == "resnet34" else 4))
    relative = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    print(
        f"\n[{keras.backend.backend()}] {arch}-style {blocks} {widths}: max |keras - torch| / max |torch| "
        f"= {relative:.2e} (max |torch| = {np.max(np.abs(expected)):.3g})"
    )
    assert relative < 1e-4


def test_full_size_resnet50_names_and_shapes_match_torchvision():
    torch_model = torch_resnet("resnet50", (3, 4, 6, 3), (64, 128, 256, 512))
    state = torch_model.state_dict()
    backbone = keras_hub_resnet("resnet50")
    names = torchvision_name_map(backbone)

    torch_backbone = {
        n for n in state if not n.startswith("fc.") and not n.endswith("num_batches_tracked")
    }
    assert set(names.values()) == torch_backbone
    assert len(names) == len(torch_backbone) == 265
    torch_params = sum(
        p.numel() for n, p in torch_model.named_parameters() if not n.startswith("fc.")
    )
    keras_params = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    print(f"\nResNet-50 backbone parameters: keras-hub {keras_params:,}, torch {torch_params:,}")
    assert keras_params == torch_params == 23_508_032

    load_torchvision_weights(backbone, state)
    loaded = _weights_by_path(backbone)
    np.testing.assert_array_equal(
        loaded["stack2_block5_2_conv/kernel"],
        state["layer3.5.conv2.weight"].numpy().transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        loaded["stack3_block0_0_bn/moving_variance"],
        state["layer4.0.downsample.1.running_var"].numpy(),
    )


@pytest.fixture(scope="module")
def small_pair():
    """A small bottleneck ResNet in torch and the matching (random) keras-hub backbone."""
    blocks, widths = (1, 1, 1, 1), (64, 16, 16, 16)
    return torch_resnet("resnet50", blocks, widths), keras_hub_resnet(
        "resnet50", widths=widths, blocks=blocks
    )


def _assert_fails_and_loads_nothing(backbone, checkpoint, *patterns, **kwargs):
    before = _weights_by_path(backbone)
    with pytest.raises(ValueError, match="nothing was loaded") as error:
        load_torchvision_weights(backbone, checkpoint, **kwargs)
    for pattern in patterns:
        assert pattern in str(error.value)
    after = _weights_by_path(backbone)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value)


def test_wrong_architecture_is_rejected_with_names(small_pair):
    _, backbone = small_pair
    basic = torch_resnet("resnet34", (1, 1, 1, 1), (64, 16, 16, 16)).state_dict()
    _assert_fails_and_loads_nothing(backbone, basic, "layer1.0.conv3.weight", "missing")


def test_shape_mismatch_is_rejected_with_shapes(small_pair):
    torch_model, backbone = small_pair
    state = dict(torch_model.state_dict())
    state["layer2.0.conv2.weight"] = torch.zeros(16, 16, 5, 5)
    _assert_fails_and_loads_nothing(
        backbone,
        state,
        "layer2.0.conv2.weight: checkpoint (16, 16, 5, 5)",
        "stack1_block0_2_conv/kernel (3, 3, 16, 16)",
    )


def test_unexpected_entries_are_rejected(small_pair):
    torch_model, backbone = small_pair
    state = dict(torch_model.state_dict())
    state["layer5.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    _assert_fails_and_loads_nothing(
        backbone, state, "1 unexpected", "layer5.0.conv1.weight (3, 3, 1, 1)"
    )


def test_prefix_selects_the_backbone_of_a_wrapped_model(small_pair):
    torch_model, backbone = small_pair
    wrapped = {f"model.{k}": v for k, v in torch_model.state_dict().items()}
    wrapped["classifier.add_block.0.weight"] = torch.zeros(512, 64)
    _assert_fails_and_loads_nothing(backbone, wrapped, "missing")
    load_torchvision_weights(backbone, wrapped, prefix="model.")
    np.testing.assert_array_equal(
        _weights_by_path(backbone)["conv1_bn/gamma"], torch_model.bn1.weight.detach().numpy()
    )


def test_pth_and_safetensors_files_read_the_same(small_pair, tmp_path):
    torch_model, _ = small_pair
    state = dict(torch_model.state_dict())
    torch.save(state, tmp_path / "model.pth")
    from_pth = read_state_dict(tmp_path / "model.pth")

    # A safetensors file written from its specification: 8-byte header size, JSON header, data.
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, tensor in state.items():
        array = tensor.numpy()
        dtype = "I64" if array.dtype == np.int64 else "F32"
        raw = array.astype("<i8" if dtype == "I64" else "<f4").tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(
        struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)
    )
    from_safetensors = read_state_dict(tmp_path / "model.safetensors")

    assert list(from_pth) == list(from_safetensors) == list(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(from_pth[name], tensor.numpy())
        np.testing.assert_array_equal(from_safetensors[name], tensor.numpy())


def test_safetensors_files_are_read_without_torch(small_pair, tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    torch_model, _ = small_pair
    state = {name: tensor.numpy() for name, tensor in torch_model.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    torch.save(torch_model.state_dict(), tmp_path / "model.pth")
    # As without torch installed: every `import torch` raises ImportError.
    monkeypatch.setitem(sys.modules, "torch", None)

    read = read_state_dict(tmp_path / "model.safetensors")
    assert sorted(read) == sorted(state)
    for name, value in state.items():
        np.testing.assert_array_equal(read[name], value)
    with pytest.raises(ValueError, match=r"model\.pth', a pickled torch checkpoint, needs torch"):
        read_state_dict(tmp_path / "model.pth")


def test_model_without_torchvision_layout_is_rejected():
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs)  # has a bias: not torchvision's.
    with pytest.raises(ValueError, match=r"conv1_conv/bias"):
        torchvision_name_map(keras.Model(inputs, outputs))


def test_batchnorm_epsilon_other_than_torch_is_rejected():
    backbone = keras_hub_resnet("resnet50", widths=(64, 16, 16, 16), blocks=(1, 1, 1, 1))
    backbone.get_layer("stack0_block0_1_bn").epsilon = 1.001e-5
    state = torch_resnet("resnet50", (1, 1, 1, 1), (64, 16, 16, 16)).state_dict()
    with pytest.raises(ValueError, match="stack0_block0_1_bn"):
        load_torchvision_weights(backbone, state)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown checkpoint type"):
        read_state_dict(tmp_path / "model.npz")
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "list.pth").write_bytes(b"")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state_dict"):
        read_state_dict(tmp_path / "list.pth")


class _NotATensor:
    pass


def test_pickled_objects_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "net_39.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": _NotATensor()}, path)
    with pytest.raises(ValueError, match=r"Refusing to read .*net_39\.pth.*_NotATensor") as error:
        read_state_dict(path)
    assert "weights_only" not in str(error.value)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"junk\.pth' is not a readable torch checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
