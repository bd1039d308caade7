"""Mixed precision (keras.mixed_precision) with LayerwiseSGD, RollbackRefine and the experiments.

Every backend runs both policies on the CPU: bfloat16 and float16 compute with float32
master weights. Rollback must restore the float32 weights bit for bit and zero the momentum.
On a CPU whose oneDNN bfloat16 kernels give NaN (AVX512-BF16 / AMX-BF16 with oneDNN on, see
docs/mixed_precision.md), bfloat16 training must be refused before its first step instead.
"""

import keras
import numpy as np
import pytest
from rollback_checks import PeriodStartProbe
from rollback_checks import assert_period_starts_from_rolled_back_state
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from experiments import train
from experiments.configs import smoke
from keras_rollback import LayerwiseSGD
from keras_rollback import RollbackRefine
from keras_rollback.onednn_bfloat16_error import OneDNNBFloat16Error
from keras_rollback.onednn_bfloat16_error import raise_if_onednn_bfloat16

MOMENTUM = 0.9
POLICIES = ("mixed_bfloat16", "mixed_float16")


def refused_here(policy):
    """Whether this machine refuses training under `policy` (its oneDNN bfloat16 kernels)."""
    try:
        raise_if_onednn_bfloat16(policy)
    except OneDNNBFloat16Error:
        return True
    return False


@pytest.fixture(params=POLICIES)
def policy(request):
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


def test_rollback_restores_float32_master_weights_exactly_and_resets_momentum(policy):
    model = tiny_cnn()
    model.compile(
        optimizer=LayerwiseSGD(momentum=MOMENTUM, nesterov=True, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert model.layers[1].compute_dtype == policy.removeprefix("mixed_")
    # Keras wraps the optimizer for float16 (dynamic loss scaling); RollbackRefine drives
    # the LayerwiseSGD inside.
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    assert isinstance(getattr(model.optimizer, "inner_optimizer", model.optimizer), LayerwiseSGD)
    partition = tiny_partition(model)
    pretrained = weights_by_path(model)
    assert {array.dtype for array in pretrained.values()} == {np.dtype("float32")}
    x, y = tiny_data()
    refine = RollbackRefine(partition, period_epochs=2, verbose=0)
    probe = PeriodStartProbe()
    if refused_here(policy):
        with pytest.raises(OneDNNBFloat16Error, match="oneDNN"):
            model.fit(x, y, batch_size=8, epochs=4, callbacks=[refine, probe], verbose=0)
        return
    model.fit(x, y, batch_size=8, epochs=4, shuffle=False, callbacks=[refine, probe], verbose=0)

    assert refine.snapshot is not None
    assert {a.dtype for a in refine.snapshot.arrays.values()} == {np.dtype("float32")}
    # Period 2 starts at epoch 2: B2..B4 restored bit for bit (assert_array_equal), B1 and
    # the head continue, momentum zero, and the first step moves by the reset-momentum rule.
    assert_period_starts_from_rolled_back_state(
        partition,
        probe,
        pretrained,
        2,
        partition.block_names[1:],
        refine.epoch_records[2]["learning_rates"],
        MOMENTUM,
    )


def test_layerwise_sgd_applies_low_precision_gradients_to_float32_weights(policy):
    del policy  # The variables stay float32 under either policy.
    variable = keras.Variable(np.array([1.0, -2.0, 3.0], np.float32))
    gradient = keras.ops.convert_to_tensor(np.array([0.5, 0.25, -1.0]), dtype="bfloat16")
    optimizer = LayerwiseSGD(learning_rate=0.1, momentum=MOMENTUM, weight_decay=0.01)
    optimizer.apply([gradient], [variable])
    step = np.array([0.5, 0.25, -1.0], np.float32) + 0.01 * np.array([1.0, -2.0, 3.0], np.float32)
    expected = np.array([1.0, -2.0, 3.0], np.float32) - 0.1 * (step + MOMENTUM * step)
    assert variable.dtype == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-6)


def test_experiment_runs_under_a_mixed_precision_policy(tmp_path):
    config = smoke.get_config()
    config.methods = ("rollback",)
    config.model.weights = ""
    config.train.mixed_precision = "mixed_bfloat16"
    if refused_here("mixed_bfloat16"):
        with pytest.raises(OneDNNBFloat16Error, match="oneDNN"):
            train.run_experiment(config, str(tmp_path))
        assert keras.config.dtype_policy().name == "float32"
        return
    rows = train.run_experiment(config, str(tmp_path))
    evaluated = [row for row in rows if row["mAP"] is not None]
    assert [row["period"] for row in evaluated] == [1, 2]
    assert all(np.isfinite(row["loss"]) and 0 <= row["mAP"] <= 1 for row in evaluated)
    assert keras.config.dtype_policy().name == "float32"  # Restored after the run.


def test_experiment_refuses_bfloat16_on_a_cpu_with_onednn_bfloat16_kernels(tmp_path, monkeypatch):
    # A Sapphire Rapids Xeon simulated: its /proc/cpuinfo flags include amx_bf16.
    monkeypatch.setattr(
        "keras_rollback.onednn_bfloat16_error.read_cpu_flags", lambda: {"avx512_bf16", "amx_bf16"}
    )
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    if not refused_here("mixed_bfloat16"):
        pytest.skip(f"{keras.backend.backend()} uses no oneDNN kernels here (JAX, or a GPU)")
    config = smoke.get_config()
    config.methods = ("rollback",)
    config.model.weights = ""
    config.train.mixed_precision = "mixed_bfloat16"
    with pytest.raises(OneDNNBFloat16Error, match="refused before it started"):
        train.run_experiment(config, str(tmp_path))
    assert keras.config.dtype_policy().name == "float32"
    assert not any(tmp_path.iterdir())  # Refused before the work dir, pre-training included.
