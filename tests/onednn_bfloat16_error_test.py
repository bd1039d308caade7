"""Tests for keras_rollback.onednn_bfloat16_error, on a CPU with bfloat16 kernels simulated.

This machine's CPU has no AVX512-BF16 or AMX-BF16, so the CPU flags are injected
(`cpu_flags=`, or `read_cpu_flags` replaced for the callers that read /proc/cpuinfo).
"""

import contextlib

import keras
import numpy as np
import pytest
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import LayerwiseSGD
from keras_rollback import RollbackRefine
from keras_rollback import UserError
from keras_rollback import onednn_bfloat16_error
from keras_rollback.onednn_bfloat16_error import OneDNNBFloat16Error
from keras_rollback.onednn_bfloat16_error import raise_if_onednn_bfloat16
from keras_rollback.onednn_bfloat16_error import read_cpu_flags

BACKEND = keras.backend.backend()
# JAX computes with XLA's kernels, never oneDNN's: nothing to refuse there.
USES_ONEDNN = BACKEND in ("tensorflow", "torch")
SAPPHIRE_RAPIDS_FLAGS = {"avx512f", "avx512bw", "avx512_bf16", "amx_tile", "amx_bf16"}
WORKAROUND = {"tensorflow": "TF_ENABLE_ONEDNN_OPTS=0", "torch": "torch.backends.mkldnn"}


def test_reads_the_flags_line_of_a_cpuinfo_file(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6430\n"
        "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
    )
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    assert read_cpu_flags(tmp_path / "absent") == frozenset()  # not Linux: nothing known


@pytest.mark.parametrize("flag", ["amx_bf16", "avx512_bf16"])
def test_refuses_bfloat16_on_a_cpu_with_onednn_bfloat16_kernels(flag):
    if not USES_ONEDNN:
        raise_if_onednn_bfloat16("mixed_bfloat16", cpu_flags={flag}, environ={})
        return
    with pytest.raises(OneDNNBFloat16Error) as raised:
        raise_if_onednn_bfloat16("mixed_bfloat16", cpu_flags={flag}, environ={})
    message = str(raised.value)
    # The cause (policy, CPU flag, backend, oneDNN) and the ways around it.
    for part in ("'mixed_bfloat16'", flag, BACKEND, "oneDNN", WORKAROUND[BACKEND], "'float32'"):
        assert part in message
    assert isinstance(raised.value, UserError) and isinstance(raised.value, ValueError)


def test_the_workaround_turns_the_refusal_off(monkeypatch):
    if BACKEND == "torch":
        import torch

        monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0"}  # read on TensorFlow only
    raise_if_onednn_bfloat16("mixed_bfloat16", cpu_flags=SAPPHIRE_RAPIDS_FLAGS, environ=environ)


@pytest.mark.parametrize(
    "policy, flags",
    [
        ("float32", SAPPHIRE_RAPIDS_FLAGS),
        ("mixed_float16", SAPPHIRE_RAPIDS_FLAGS),
        ("mixed_bfloat16", {"avx2", "fma", "avx512f", "avx512bw"}),  # no bfloat16 instructions
        ("mixed_bfloat16", set()),
    ],
)
def test_other_policies_and_cpus_pass(policy, flags):
    raise_if_onednn_bfloat16(policy, cpu_flags=flags, environ={})


def test_reads_the_global_policy_by_default():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        context = pytest.raises(OneDNNBFloat16Error) if USES_ONEDNN else contextlib.nullcontext()
        with context:
            raise_if_onednn_bfloat16(cpu_flags={"amx_bf16"}, environ={})
    finally:
        keras.config.set_dtype_policy("float32")
    raise_if_onednn_bfloat16(cpu_flags={"amx_bf16"}, environ={})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dtype_policy": 3}, "dtype_policy=3"),
        ({"dtype_policy": "bfloat8"}, "dtype_policy='bfloat8'"),
        ({"cpu_flags": "amx_bf16"}, "cpu_flags='amx_bf16'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        raise_if_onednn_bfloat16(**kwargs)


def test_rollback_refine_refuses_before_the_first_step(monkeypatch):
    monkeypatch.setattr(onednn_bfloat16_error, "read_cpu_flags", lambda: SAPPHIRE_RAPIDS_FLAGS)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = tiny_cnn()
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = weights_by_path(model)
    x, y = tiny_data()
    refine = RollbackRefine(tiny_partition(model), period_epochs=1, verbose=0)
    context = pytest.raises(OneDNNBFloat16Error) if USES_ONEDNN else contextlib.nullcontext()
    with context:
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[refine], verbose=0)
    if USES_ONEDNN:  # refused in on_train_begin: no step was taken
        for path, array in weights_by_path(model).items():
            np.testing.assert_array_equal(array, before[path])
