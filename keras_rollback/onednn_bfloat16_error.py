"""Refuses `mixed_bfloat16` training on CPUs where oneDNN's bfloat16 kernels make it NaN."""

import os

import keras

from keras_rollback import compat
from keras_rollback.user_error import UserError

CPUINFO_PATH = "/proc/cpuinfo"
# The CPU flags (as /proc/cpuinfo spells them) of the bfloat16 instructions that oneDNN's
# bfloat16 convolution, matmul and pooling kernels run on: AVX512-BF16 (Cooper Lake, Sapphire
# Rapids and later, AMD Zen 4 and later) and AMX-BF16 (Sapphire Rapids and later).
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


class OneDNNBFloat16Error(UserError, ValueError):
    """Training under a bfloat16 policy on a CPU whose oneDNN bfloat16 kernels make it NaN.

    On CPUs with AVX512-BF16 or AMX-BF16 instructions, TensorFlow (with its
    default oneDNN optimisations) and torch (with `torch.backends.mkldnn`
    enabled) run bfloat16 convolutions, matmuls and pooling on oneDNN's
    bfloat16 kernels, and the first training step of a ResNet-18 ReID model
    under `mixed_bfloat16` gives a NaN loss (TensorFlow) or NaN evaluation
    features (torch); without those kernels (other CPUs, JAX, oneDNN off) the
    same run is finite. See docs/mixed_precision.md. `raise_if_onednn_bfloat16`
    raises it before training, naming the CPU flag and the workaround.

    Example:

    ```python
    try:
        raise_if_onednn_bfloat16("mixed_bfloat16")
    except OneDNNBFloat16Error as error:
        print(error)  # the cause and how to train anyway
    ```
    """


def read_cpu_flags(path=CPUINFO_PATH):
    """The CPU flags listed in a `/proc/cpuinfo`-style file.

    Args:
        path: String. The file to read. Defaults to `"/proc/cpuinfo"`.

    Returns:
        A frozenset of flag names (e.g. `"avx512_bf16"`), empty where the file
        does not exist (not Linux) or lists no `flags` line.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as cpuinfo:
            lines = cpuinfo.read().splitlines()
    except FileNotFoundError:
        return frozenset()
    flags = set()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return frozenset(flags)


def raise_if_onednn_bfloat16(dtype_policy=None, *, cpu_flags=None, environ=None):
    """Raises `OneDNNBFloat16Error` if training would compute in bfloat16 on oneDNN's kernels.

    That is: `dtype_policy` computes in bfloat16, the CPU has AVX512-BF16 or
    AMX-BF16 (`BFLOAT16_CPU_FLAGS`), training runs on the CPU, and the
    backend's oneDNN kernels are enabled (TensorFlow unless
    `TF_ENABLE_ONEDNN_OPTS=0`; torch while `torch.backends.mkldnn.enabled`;
    never JAX). Call it before building and training a model: the
    experiments do where they set the policy, and `RollbackRefine` does in
    `on_train_begin`. Any other case returns at once.

    Example:

    ```python
    keras.config.set_dtype_policy("mixed_bfloat16")
    raise_if_onednn_bfloat16()  # raises on e.g. a Sapphire Rapids Xeon with oneDNN on
    ```

    Args:
        dtype_policy: String, `keras.DTypePolicy` or None: the policy to check,
            None for the global one (`keras.config.dtype_policy()`). Defaults to
            `None`.
        cpu_flags: Iterable of CPU flag strings, or None to read `/proc/cpuinfo`
            (`read_cpu_flags`). Defaults to `None`.
        environ: Mapping of environment variables, or None for `os.environ`
            (TensorFlow's `TF_ENABLE_ONEDNN_OPTS` is read from it). Defaults to
            `None`.
    """
    policy = keras.config.dtype_policy() if dtype_policy is None else dtype_policy
    try:
        policy = keras.dtype_policies.get(policy)
    except (ValueError, TypeError):
        raise ValueError(
            "`dtype_policy` must be a Keras dtype policy, its name or None. Received: "
            f"dtype_policy={dtype_policy!r}"
        ) from None
    if isinstance(cpu_flags, str):
        raise ValueError(
            "`cpu_flags` must be an iterable of flag names (e.g. {'avx512_bf16'}) or None. "
            f"Received: cpu_flags={cpu_flags!r}"
        )
    if policy.compute_dtype != "bfloat16":
        return
    flags = read_cpu_flags() if cpu_flags is None else frozenset(cpu_flags)
    found = [flag for flag in BFLOAT16_CPU_FLAGS if flag in flags]
    if not found:
        return
    enabled, how_to_disable = onednn_cpu_kernels(environ)
    if not enabled:
        return
    raise OneDNNBFloat16Error(
        f"The dtype policy {policy.name!r} computes in bfloat16, and this CPU has "
        f"{' and '.join(found)}, so the {keras.backend.backend()} backend runs the "
        "bfloat16 convolutions, matmuls and pooling on oneDNN's bfloat16 kernels, which "
        "give NaN losses or features on such CPUs (first seen on Intel Xeons with AMX; see "
        "docs/mixed_precision.md). Training was refused before it started. To train in "
        f"bfloat16 anyway, {how_to_disable}; or use the policy 'float32' (on the CPU "
        "bfloat16 is no faster), 'mixed_float16', the JAX backend, or a GPU."
    )


def onednn_cpu_kernels(environ=None):
    """Whether the active backend runs its CPU ops on oneDNN now, and how to turn that off.

    TensorFlow uses oneDNN unless `TF_ENABLE_ONEDNN_OPTS` is `0`/`false` (read
    once, when TensorFlow starts); torch while `torch.backends.mkldnn.enabled`
    is true (read at each op). JAX runs XLA's own CPU kernels, never oneDNN's.
    Only training on the CPU is concerned: on a GPU neither backend uses them.

    Args:
        environ: Mapping of environment variables, or None for `os.environ`.
            Defaults to `None`.

    Returns:
        `(enabled, how_to_disable)`: a bool, and a sentence saying how to turn
        oneDNN off on this backend (None where it is not used).
    """
    if not compat.device_name().lower().startswith("cpu"):
        return False, None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        value = (os.environ if environ is None else environ).get("TF_ENABLE_ONEDNN_OPTS", "1")
        return value.strip().lower() not in ("0", "false"), (
            "set the environment variable TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow is "
            "imported (e.g. `TF_ENABLE_ONEDNN_OPTS=0 python -m experiments.main ...`)"
        )
    if backend == "torch":
        import torch

        enabled = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
        return enabled, (
            "set `torch.backends.mkldnn.enabled = False` before training, or train inside "
            "`with torch.backends.mkldnn.flags(enabled=False):`"
        )
    return False, None
