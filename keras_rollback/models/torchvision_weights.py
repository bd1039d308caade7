"""torchvision ResNet checkpoints (`.pth` / `.safetensors` state_dicts) -> keras-hub ResNet backbones."""

import os
import re
from collections.abc import Mapping

import numpy as np
from absl import logging

from keras_rollback.models.weight_file_errors import WeightFileError
from keras_rollback.models.weight_file_errors import WeightFileNotFoundError

TORCH_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

# torch BatchNorm parameters and buffers -> Keras BatchNormalization variables.
_BN_VARIABLES = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_TORCH_BN_EPSILON = 1e-5
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_STEM = re.compile(r"conv1_(conv|bn)$")
_BLOCK = re.compile(r"stack(\d+)_block(\d+)_(\d)_(conv|bn)$")


def read_state_dict(path):
    """Reads a PyTorch state_dict file into numpy arrays.

    `.safetensors` files are read with the `safetensors` package and numpy
    (torch is not imported); other files with `torch.load(path,
    weights_only=True)`, which never runs code from the file: a file that
    pickles other Python objects is refused with a `ValueError` naming it, and
    without torch installed a `ValueError` says so. A checkpoint that wraps
    the weights in a `"state_dict"` entry is unwrapped.

    Args:
        path: String or path-like. A `.pth`, `.pt`, `.bin` or `.safetensors`
            file.

    Returns:
        A dict from parameter name to `np.ndarray`, in file order.
    """
    path = os.fspath(path)
    if not path.endswith(TORCH_CHECKPOINT_SUFFIXES):
        raise WeightFileError(
            f"Unknown checkpoint type. Received: path={path!r}. Expected one of {list(TORCH_CHECKPOINT_SUFFIXES)}."
        )
    if not os.path.isfile(path):
        raise WeightFileNotFoundError(f"Checkpoint not found. Received: path={path!r}")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    torch = _import_torch(path)
    state = _load_pickled_state_dict(path, torch)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise WeightFileError(f"{path!r} is not a state_dict (a mapping from names to tensors).")
    return {name: _to_numpy(tensor) for name, tensor in state.items()}


def torchvision_name_map(backbone):
    """The torchvision parameter name of every weight of a keras-hub ResNet.

    `conv1_conv` -> `conv1`, `conv1_bn` -> `bn1`, `stack{s}_block{b}_{k}_conv`
    -> `layer{s+1}.{b}.conv{k}`, `..._{k}_bn` -> `bn{k}`, and the projection
    shortcut `..._0_conv` / `..._0_bn` -> `downsample.0` / `downsample.1`;
    Keras' `gamma, beta, moving_mean, moving_variance` are torch's `weight,
    bias, running_mean, running_var`.

    Args:
        backbone: keras-hub `ResNetBackbone` (ResNet v1 with one stem
            convolution and basic or bottleneck blocks), or a model with the
            same weight paths.

    Returns:
        A dict from Keras weight path to torchvision name, in model order.
    """
    names = {}
    unknown = []
    for weight in backbone.weights:
        layer, variable = weight.path.rsplit("/", 1)
        stem, block = _STEM.match(layer), _BLOCK.match(layer)
        if stem:
            module = "conv1" if stem.group(1) == "conv" else "bn1"
        elif block:
            stage, index, position, kind = block.groups()
            prefix = f"layer{int(stage) + 1}.{index}."
            if position == "0":
                module = prefix + ("downsample.0" if kind == "conv" else "downsample.1")
            else:
                module = prefix + f"{kind}{position}"
        else:
            unknown.append(weight.path)
            continue
        if layer.endswith("conv") and variable == "kernel":
            names[weight.path] = f"{module}.weight"
        elif layer.endswith("bn") and variable in _BN_VARIABLES:
            names[weight.path] = f"{module}.{_BN_VARIABLES[variable]}"
        else:
            unknown.append(weight.path)
    if unknown:
        raise ValueError(
            f"Model {backbone.name!r} is not a ResNet with torchvision's layout (a keras-hub ResNetBackbone, "
            f"v1, one stem convolution, no biases): no torchvision name for {len(unknown)} weight(s), "
            f"e.g. {unknown[:5]}."
        )
    return names


def load_torchvision_weights(backbone, checkpoint, *, prefix=""):
    """Loads a torchvision ResNet state_dict into a keras-hub ResNet, all or nothing.

    Convolution kernels are transposed from torch's `(out, in, h, w)` to
    Keras' `(h, w, in, out)`; BatchNorm weight, bias, running mean and
    running variance become gamma, beta, moving mean and moving variance.
    The keras-hub backbone already follows torchvision's conventions (BatchNorm
    epsilon 1e-5, explicit symmetric zero padding before strided
    convolutions, stride on the 3x3 convolution of a bottleneck), which is
    checked for the epsilon. `fc.*` and `num_batches_tracked` entries are
    ignored. Every backbone weight must get exactly one tensor of the right
    shape and every other entry under `prefix` must be used; otherwise a
    `ValueError` lists the first missing, unexpected and mismatching names
    with their shapes, and no weight is changed.

    Example:

    ```python
    backbone = build_backbone("resnet50")
    load_torchvision_weights(backbone, "resnet50-0676ba61.pth")
    # The backbone of a ReID model saved by the authors' PyTorch code:
    load_torchvision_weights(backbone, "net_39.pth", prefix="model.")
    ```

    Args:
        backbone: keras-hub `ResNetBackbone` built with torchvision's
            configuration (`keras_hub_resnet`).
        checkpoint: Path of a state_dict file (see `read_state_dict`) or a
            mapping from names to arrays (numpy or torch tensors).
        prefix: String. Prefix of the backbone's entries in the state_dict
            (`"module."` for `DataParallel` checkpoints, `"model."` for a ReID
            model wrapping the ResNet); entries without it are ignored.
            Defaults to `""`.
    """
    if not isinstance(prefix, str):
        raise ValueError(f"`prefix` must be a string. Received: prefix={prefix!r}")
    if isinstance(checkpoint, Mapping):
        state = {name: _to_numpy(value) for name, value in checkpoint.items()}
        source = "the given state_dict"
    else:
        state = read_state_dict(checkpoint)
        source = repr(os.fspath(checkpoint))
    names = torchvision_name_map(backbone)
    _check_epsilons(backbone)
    state = {name[len(prefix) :]: value for name, value in state.items() if name.startswith(prefix)}
    ignored = [n for n in state if n.startswith("fc.") or n.endswith("num_batches_tracked")]
    used = set(names.values())
    missing, mismatched, values = [], [], []
    for weight in backbone.weights:
        name = names[weight.path]
        if name not in state:
            missing.append(f"{name} {tuple(weight.shape)} (for {weight.path})")
            continue
        value = state[name]
        if value.ndim == 4:
            value = np.transpose(value, (2, 3, 1, 0))
        if tuple(value.shape) != tuple(weight.shape):
            mismatched.append(
                f"{name}: checkpoint {tuple(state[name].shape)} -> {tuple(value.shape)} "
                f"vs {weight.path} {tuple(weight.shape)}"
            )
            continue
        values.append((weight, value))
    unexpected = [
        f"{n} {tuple(state[n].shape)}" for n in state if n not in used and n not in ignored
    ]
    if missing or mismatched or unexpected:
        raise WeightFileError(
            f"Checkpoint {source} does not fit model {backbone.name!r} (another architecture or prefix? "
            f"prefix={prefix!r}); nothing was loaded. {len(missing)} missing: {missing[:5]}; "
            f"{len(mismatched)} with another shape: {mismatched[:5]}; {len(unexpected)} unexpected: "
            f"{unexpected[:5]}."
        )
    for weight, value in values:
        weight.assign(value.astype(weight.dtype))
    logging.info(
        "Loaded %d torchvision tensors from %s into %r; ignored %d (%s).",
        len(values),
        source,
        backbone.name,
        len(ignored),
        ", ".join(ignored[:4]),
    )


def _check_epsilons(backbone):
    wrong = [
        layer.name
        for layer in backbone.layers
        if hasattr(layer, "epsilon")
        and hasattr(layer, "moving_variance")
        and not np.isclose(layer.epsilon, _TORCH_BN_EPSILON, rtol=0, atol=1e-12)
    ]
    if wrong:
        raise ValueError(
            f"Model {backbone.name!r} has BatchNormalization layers with an epsilon other than torch's "
            f"{_TORCH_BN_EPSILON}: {wrong[:5]}. Their outputs would differ from torchvision's."
        )


def _to_numpy(value):
    if hasattr(value, "detach"):  # A torch tensor.
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        return value.numpy()
    return np.asarray(value)


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        state = load_file(path)
    except (SafetensorError, OSError) as e:
        raise WeightFileError(f"{path!r} is not a safetensors file: {e}") from None
    return {
        name: array.astype(np.float32) if array.dtype.kind == "f" else array
        for name, array in state.items()
    }


def _import_torch(path):
    """torch, an optional dependency needed for pickled checkpoints only."""
    try:
        import torch
    except ImportError:
        raise WeightFileError(
            f"Reading {path!r}, a pickled torch checkpoint, needs torch, which is not installed. "
            "Install torch (CPU is enough), or use the same weights as a .safetensors file, "
            "which is read without torch."
        ) from None
    return torch


def _load_pickled_state_dict(path, torch):
    """`torch.load(weights_only=True)`: tensors only, a refusal naming the file otherwise."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _UNSUPPORTED_GLOBAL.search(str(e))
        if found is None:  # Not a pickle at all: a truncated or foreign file.
            raise WeightFileError(
                f"{path!r} is not a readable torch checkpoint: not a state_dict written by "
                "`torch.save` (a truncated download or another format?)."
            ) from None
        raise WeightFileError(
            f"Refusing to read {path!r}: it is not a plain state_dict of tensors (it stores a "
            f"{found.group(1)!r} object). Loading it would unpickle arbitrary Python objects, "
            "which can run code from the file, so keras-rollback reads only tensors. Save the "
            "weights themselves, e.g. `torch.save(model.state_dict(), path)`, or as a "
            ".safetensors file."
        ) from None
    except (RuntimeError, EOFError) as e:  # Not a torch file, or a truncated one.
        raise WeightFileError(
            f"{path!r} is not a readable torch checkpoint ({str(e).splitlines()[0]})."
        ) from None
