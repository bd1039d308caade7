"""The fused torch `LayerwiseSGD` update (and its choice by `LayerwiseSGD(...)`) against numpy."""

import keras
import numpy as np
import pytest

from keras_rollback import LayerwiseSGD

SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]
MULTIPLIERS = [1.0, 0.1, 0.25]


def _numpy_sgd_step(weight, buffer, grad, rate, momentum, nesterov, weight_decay):
    grad = grad + weight_decay * weight
    buffer = momentum * buffer + grad
    step = grad + momentum * buffer if nesterov else buffer
    return weight - rate * step, buffer


def test_fused_subclass_only_on_eager_torch():
    optimizer = LayerwiseSGD()
    fused = type(optimizer) is not LayerwiseSGD
    assert fused == (keras.backend.backend() == "torch")
    assert isinstance(optimizer, LayerwiseSGD)
    # Saved under LayerwiseSGD's name whichever class ran, so the file loads on every backend.
    config = keras.saving.serialize_keras_object(optimizer)
    assert config["registered_name"] == "keras_rollback>LayerwiseSGD"
    assert isinstance(keras.saving.deserialize_keras_object(config), LayerwiseSGD)


@pytest.mark.parametrize("nesterov", [True, False])
def test_update_of_a_reordered_subset_matches_numpy(nesterov):
    """Variables applied out of build order (and not all of them) keep their own rate and buffer."""
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=s).astype("float32") for s in SHAPES]
    variables = [keras.Variable(w, name=f"w{i}") for i, w in enumerate(initial)]
    optimizer = LayerwiseSGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    optimizer.build(variables)
    optimizer.set_learning_rate_multipliers({v.path: m for v, m in zip(variables, MULTIPLIERS)})
    weights = [w.astype("float64") for w in initial]
    buffers = [np.zeros(s) for s in SHAPES]
    order = [2, 0]  # Variable 1 gets no gradient: it must not move.
    for _ in range(3):
        grads = {i: rng.normal(size=SHAPES[i]).astype("float32") for i in order}
        optimizer.apply([grads[i] for i in order], [variables[i] for i in order])
        for i in order:
            weights[i], buffers[i] = _numpy_sgd_step(
                weights[i], buffers[i], grads[i], 0.1 * MULTIPLIERS[i], 0.9, nesterov, 5e-4
            )
    for i, variable in enumerate(variables):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable), weights[i], rtol=0, atol=1e-6
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(optimizer.momentums[i]), buffers[i], rtol=0, atol=1e-6
        )
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variables[1]), initial[1])
