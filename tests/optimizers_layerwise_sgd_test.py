"""LayerwiseSGD against torch.optim.SGD, step for step, on the active Keras backend."""

import keras
import numpy as np
import pytest
import torch
from optimizer_checks import max_difference
from optimizer_checks import run_keras_phases

from keras_rollback import LayerwiseSGD

SHAPES = [(3, 4), (4,), (2, 2, 3, 2)]
# Param-group learning rates in three phases: the paper's period 1, a 10x drop inside the
# period, then a period-2 restart with different per-group rates and a momentum reset.
PHASES = [
    {"steps": 8, "rates": [0.1, 0.01, 0.01], "reset": False},
    {"steps": 8, "rates": [0.01, 0.001, 0.001], "reset": False},
    {"steps": 8, "rates": [0.01, 0.001, 0.01], "reset": True},
]


def _gradients(rng):
    return [rng.normal(size=s).astype("float32") for s in SHAPES]


def _run_torch(phases, initial, grads_per_step, nesterov, weight_decay):
    params = [torch.nn.Parameter(torch.tensor(w)) for w in initial]
    history, step = [], 0
    optimizer = None
    for phase in phases:
        if optimizer is None or phase["reset"]:
            # A new optimizer per period, as the authors' code does: momentum restarts.
            optimizer = torch.optim.SGD(
                [{"params": [p], "lr": r} for p, r in zip(params, phase["rates"])],
                momentum=0.9,
                nesterov=nesterov,
                weight_decay=weight_decay,
            )
        for group, rate in zip(optimizer.param_groups, phase["rates"]):
            group["lr"] = rate
        for _ in range(phase["steps"]):
            for p, g in zip(params, grads_per_step[step]):
                p.grad = torch.tensor(g)
            optimizer.step()
            history.append([p.detach().numpy().copy() for p in params])
            step += 1
    return history


@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_sgd_across_lr_drop_and_momentum_reset(nesterov):
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=s).astype("float32") for s in SHAPES]
    steps = sum(p["steps"] for p in PHASES)
    grads = [_gradients(rng) for _ in range(steps)]
    expected = _run_torch(PHASES, initial, grads, nesterov, weight_decay=5e-4)
    optimizer = LayerwiseSGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    actual = run_keras_phases(PHASES, optimizer, initial, grads)
    difference = max_difference(actual, expected)
    print(
        f"[{keras.backend.backend()}] nesterov={nesterov}: max |keras - torch| = {difference:.3g}"
    )
    assert difference < 1e-6
    # The trajectory must have moved far more than the tolerance for the match to mean anything.
    assert max_difference(actual[-1:], [initial]) > 0.1


def test_keras_sgd_is_not_torch_equivalent():
    """The reference is sensitive: Keras' own SGD drifts from torch after the LR drop."""
    rng = np.random.default_rng(1)
    initial = [rng.normal(size=s).astype("float32") for s in SHAPES]
    grads = [_gradients(rng) for _ in range(sum(p["steps"] for p in PHASES))]
    # One learning rate for all variables and no reset: only the LR drop remains.
    phases = [dict(p, rates=[p["rates"][0]] * 3, reset=False) for p in PHASES]
    expected = _run_torch(phases, initial, grads, nesterov=True, weight_decay=0.0)
    actual = run_keras_phases(
        phases,
        keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
        initial,
        grads,
    )
    assert max_difference(actual, expected) > 1e-3


def test_multipliers_and_momentum_survive_keras_file_round_trip(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(inputs))
    model.compile(optimizer=LayerwiseSGD(learning_rate=0.05, weight_decay=1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.set_learning_rate_multipliers({"fc/kernel": 0.25})
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, LayerwiseSGD)
    assert restored.optimizer.get_config()["weight_decay"] == 1e-3
    assert restored.optimizer.get_learning_rate_multipliers() == {"fc/kernel": 0.25, "fc/bias": 1.0}
    for a, b in zip(model.optimizer.momentums, restored.optimizer.momentums):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"momentum": -0.1}, "momentum=-0.1"),
        ({"momentum": 0.0, "nesterov": True}, "nesterov=True"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0"),
        ({"use_ema": True}, "use_ema"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LayerwiseSGD(**kwargs)


def test_multiplier_errors_name_the_culprit():
    optimizer = LayerwiseSGD()
    with pytest.raises(ValueError, match="before `set_learning_rate_multipliers`"):
        optimizer.set_learning_rate_multipliers({"x": 1.0})
    variable = keras.Variable(np.zeros(2, "float32"), name="w")
    optimizer.build([variable])
    with pytest.raises(ValueError, match="nope/kernel"):
        optimizer.set_learning_rate_multipliers({"nope/kernel": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        optimizer.set_learning_rate_multipliers({variable.path: -1.0})
