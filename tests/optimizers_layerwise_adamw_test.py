"""LayerwiseAdamW against torch.optim.AdamW, step for step, on the active Keras backend."""

import keras
import numpy as np
import pytest
import torch
from optimizer_checks import max_difference
from optimizer_checks import run_keras_phases

from keras_rollback import LayerwiseAdamW

SHAPES = [(3, 4), (4,), (2, 2, 3, 2)]
WEIGHT_DECAY = 0.05
# Param-group learning rates in three phases: period 1 with two groups (the first variable at
# 10x the others' rate), a 10x drop inside the period, then a period-2 restart with other
# per-group rates: a new torch optimizer, `reset_state()` here.
PHASES = [
    {"steps": 8, "rates": [0.01, 0.001, 0.001], "reset": False},
    {"steps": 8, "rates": [0.001, 0.0001, 0.0001], "reset": False},
    {"steps": 8, "rates": [0.001, 0.0001, 0.001], "reset": True},
]


def _gradients(rng):
    return [rng.normal(size=s).astype("float32") for s in SHAPES]


def _run_torch(phases, initial, grads_per_step, betas=(0.9, 0.999)):
    params = [torch.nn.Parameter(torch.tensor(w)) for w in initial]
    history, step = [], 0
    optimizer = None
    for phase in phases:
        if optimizer is None or phase["reset"]:
            # A new optimizer per period, as the authors' code does: moments and steps restart.
            optimizer = torch.optim.AdamW(
                [{"params": [p], "lr": r} for p, r in zip(params, phase["rates"])],
                betas=betas,
                weight_decay=WEIGHT_DECAY,
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


def _problem(seed):
    rng = np.random.default_rng(seed)
    initial = [rng.normal(size=s).astype("float32") for s in SHAPES]
    grads = [_gradients(rng) for _ in range(sum(p["steps"] for p in PHASES))]
    return initial, grads


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.0, 0.99)])
def test_matches_torch_adamw_across_lr_drop_and_reset(betas):
    initial, grads = _problem(0)
    expected = _run_torch(PHASES, initial, grads, betas)
    optimizer = LayerwiseAdamW(
        learning_rate=0.01, beta_1=betas[0], beta_2=betas[1], weight_decay=WEIGHT_DECAY
    )
    actual = run_keras_phases(PHASES, optimizer, initial, grads)
    difference = max_difference(actual, expected)
    print(
        f"[{keras.backend.backend()}] betas={betas}: "
        f"max |LayerwiseAdamW - torch AdamW| = {difference:.3g}"
    )
    assert difference < 1e-6
    # The trajectory must have moved far more than the tolerance for the match to mean anything.
    assert max_difference(actual[-1:], [initial]) > 0.02
    # Keras' `iterations` keeps counting (schedules read it); Adam's step counts restarted.
    assert int(optimizer.iterations) == 24
    np.testing.assert_array_equal(
        [keras.ops.convert_to_numpy(c) for c in optimizer.step_counts], [8.0] * 3
    )


def test_reset_is_needed_and_keras_adamw_is_not_torch_equivalent():
    """The reference is sensitive: without the reset, and with Keras' AdamW, results drift."""
    initial, grads = _problem(1)
    expected = _run_torch(PHASES, initial, grads)
    no_reset = [dict(p, reset=False) for p in PHASES]
    actual = run_keras_phases(
        no_reset, LayerwiseAdamW(0.01, weight_decay=WEIGHT_DECAY), initial, grads
    )
    assert max_difference(actual, expected) > 1e-4
    one_rate = [dict(p, rates=[p["rates"][0]] * 3, reset=False) for p in PHASES]
    expected = _run_torch(one_rate, initial, grads)
    variables = [keras.Variable(w) for w in initial]
    keras_adamw = keras.optimizers.AdamW(0.01, weight_decay=WEIGHT_DECAY, epsilon=1e-3)
    torch_params = [torch.nn.Parameter(torch.tensor(w)) for w in initial]
    torch_adamw = torch.optim.AdamW(torch_params, lr=0.01, weight_decay=WEIGHT_DECAY, eps=1e-3)
    for step_grads in grads[:8]:
        keras_adamw.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
        for p, g in zip(torch_params, step_grads):
            p.grad = torch.tensor(g)
        torch_adamw.step()
    difference = max(
        float(np.max(np.abs(keras.ops.convert_to_numpy(v) - p.detach().numpy())))
        for v, p in zip(variables, torch_params)
    )
    assert difference > 1e-4


def test_zero_rate_group_stays_bit_identical():
    initial, grads = _problem(2)
    optimizer = LayerwiseAdamW(0.01, weight_decay=WEIGHT_DECAY)
    phases = [{"steps": 3, "rates": [0.01, 0.0, 0.01], "reset": False}]
    history = run_keras_phases(phases, optimizer, initial, grads)
    np.testing.assert_array_equal(history[-1][1], initial[1])
    assert not np.array_equal(history[-1][0], initial[0])


def test_state_survives_keras_file_round_trip(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(inputs))
    model.compile(
        optimizer=LayerwiseAdamW(learning_rate=0.05, beta_2=0.99, weight_decay=1e-3), loss="mse"
    )
    model.optimizer.build(model.trainable_variables)
    model.optimizer.set_learning_rate_multipliers({"fc/kernel": 0.25})
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=2, batch_size=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, LayerwiseAdamW)
    config = restored.optimizer.get_config()
    assert (config["beta_2"], config["weight_decay"]) == (0.99, 1e-3)
    assert restored.optimizer.get_learning_rate_multipliers() == {"fc/kernel": 0.25, "fc/bias": 1.0}
    assert [float(keras.ops.convert_to_numpy(c)) for c in restored.optimizer.step_counts] == [4, 4]
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_get_config_round_trip():
    optimizer = LayerwiseAdamW(
        learning_rate=3e-4, beta_1=0.8, beta_2=0.99, epsilon=1e-6, weight_decay=0.0, clipnorm=1.0
    )
    config = optimizer.get_config()
    assert {k: config[k] for k in ("beta_1", "beta_2", "epsilon", "weight_decay")} == {
        "beta_1": 0.8,
        "beta_2": 0.99,
        "epsilon": 1e-6,
        "weight_decay": 0.0,
    }
    clone = LayerwiseAdamW.from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(optimizer)
    # Saved under LayerwiseAdamW's name whichever class ran, so the file loads on every backend.
    assert serialized["registered_name"] == "keras_rollback>LayerwiseAdamW"
    assert isinstance(keras.saving.deserialize_keras_object(serialized), LayerwiseAdamW)


def test_defaults_are_torch_defaults():
    config = LayerwiseAdamW().get_config()
    defaults = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults
    assert np.isclose(config["learning_rate"], defaults["lr"])
    assert (config["beta_1"], config["beta_2"]) == defaults["betas"]
    assert config["epsilon"] == defaults["eps"]
    assert config["weight_decay"] == defaults["weight_decay"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta_1": 1.0}, "beta_1=1.0"),
        ({"beta_1": -0.1}, "beta_1=-0.1"),
        ({"beta_2": 1.5}, "beta_2=1.5"),
        ({"beta_2": "0.9"}, "beta_2='0.9'"),
        ({"epsilon": -1e-8}, "epsilon=-1e-08"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0"),
        ({"use_ema": True}, "use_ema"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LayerwiseAdamW(**kwargs)


def test_methods_before_build_say_what_to_do():
    optimizer = LayerwiseAdamW()
    for method in ("reset_state", "get_learning_rate_multipliers"):
        with pytest.raises(ValueError, match=f"before `{method}`"):
            getattr(optimizer, method)()
