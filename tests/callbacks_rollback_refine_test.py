"""RollbackRefine through model.fit on the active backend: what the first step of each period sees."""

import keras
import numpy as np
import pytest
import torch
from rollback_checks import PeriodStartProbe
from rollback_checks import assert_period_starts_from_rolled_back_state
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import LayerwiseAdamW
from keras_rollback import LayerwiseSGD
from keras_rollback import PretrainedSnapshot
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine

MOMENTUM = 0.9
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


OPTIMIZERS = {
    "sgd": lambda: LayerwiseSGD(momentum=MOMENTUM, nesterov=True, weight_decay=5e-4),
    "adamw": lambda: LayerwiseAdamW(weight_decay=0.05),
    "adamw_loss_scaled": lambda: keras.optimizers.LossScaleOptimizer(
        LayerwiseAdamW(weight_decay=0.05)
    ),
}


def _compiled_model(optimizer="sgd"):
    model = tiny_cnn()
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss=LOSS)
    return model


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_first_step_of_each_period_starts_from_rolled_back_state(optimizer):
    model = _compiled_model(optimizer)
    partition = tiny_partition(model)
    pretrained = weights_by_path(model)
    x, y = tiny_data()
    refine = RollbackRefine(partition, period_epochs=2, verbose=0)
    probe = PeriodStartProbe()
    model.fit(x, y, batch_size=8, epochs=8, shuffle=False, callbacks=[refine, probe], verbose=0)

    for p, start in ((2, 2), (3, 4), (4, 6)):
        rolled_back = partition.block_names[p - 1 :]
        kept = partition.block_names[: p - 1]
        rates = refine.epoch_records[start]["learning_rates"]
        assert_period_starts_from_rolled_back_state(
            partition, probe, pretrained, start, rolled_back, rates, MOMENTUM
        )
        assert rates == {
            **dict.fromkeys(kept, 0.001),
            **dict.fromkeys(rolled_back, 0.01),
            "head": 0.01,
        }
    assert refine.epoch_records[0]["learning_rates"] == {
        **dict.fromkeys(partition.block_names, 0.01),
        "head": 0.1,
    }


def _tiny_mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = inputs
    for block in range(1, 5):
        x = keras.layers.Dense(8, activation="tanh", name=f"b{block}_dense")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


TORCH_OPTIMIZERS = {
    "sgd": lambda groups: torch.optim.SGD(
        groups, momentum=MOMENTUM, nesterov=True, weight_decay=5e-4
    ),
    "adamw": lambda groups: torch.optim.AdamW(groups, weight_decay=0.05),
}


def _torch_run(model, partition, initial, records, x, y, optimizer_name, batch_size):
    """The same training in plain PyTorch: a new optimizer per period, rollback by copy."""
    params = {}
    modules = []
    for layer in [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]:
        kernel, bias = (initial[w.path] for w in layer.weights)
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(kernel.T))
            linear.bias.copy_(torch.tensor(bias))
        params[layer.kernel.path], params[layer.bias.path] = linear.weight, linear.bias
        modules += [linear, torch.nn.Tanh()]
    network = torch.nn.Sequential(*modules[:-1])
    optimizer, period = None, None
    for record in records:
        rates = record["learning_rates"]
        with torch.no_grad():
            for block in record["rolled_back"]:
                for path in partition.paths(block):
                    value = initial[path].T if path.endswith("kernel") else initial[path]
                    params[path].copy_(torch.tensor(value))
        if record["period"] != period:
            period = record["period"]
            optimizer = TORCH_OPTIMIZERS[optimizer_name](
                [
                    {"params": [params[p] for p in partition.paths(group)], "lr": rates[group]}
                    for group in partition.group_names
                ]
            )
        for group, param_group in zip(partition.group_names, optimizer.param_groups):
            param_group["lr"] = rates[group]
        for start in range(0, len(x), batch_size):
            optimizer.zero_grad()
            logits = network(torch.tensor(x[start : start + batch_size]))
            loss = torch.nn.functional.cross_entropy(
                logits, torch.tensor(y[start : start + batch_size])
            )
            loss.backward()
            optimizer.step()
    return {
        path: (p.detach().numpy().T if path.endswith("kernel") else p.detach().numpy())
        for path, p in params.items()
    }


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_matches_a_plain_pytorch_run_with_a_new_optimizer_per_period(optimizer):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 3, size=16)
    model = _tiny_mlp()
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss=LOSS)
    partition = tiny_partition(model)
    initial = weights_by_path(model)
    refine = RollbackRefine(
        partition, plan=RefinePlan(period_epochs=2, periods=3, decay_epochs=1), verbose=0
    )
    model.fit(x, y, batch_size=8, epochs=6, shuffle=False, callbacks=[refine], verbose=0)
    assert [r["rolled_back"] for r in refine.epoch_records][2::2] == [
        ("B2", "B3", "B4"),
        ("B3", "B4"),
    ]
    expected = _torch_run(model, partition, initial, refine.epoch_records, x, y, optimizer, 8)
    actual = weights_by_path(model)
    difference = max(float(np.max(np.abs(actual[p] - expected[p]))) for p in expected)
    print(f"[{keras.backend.backend()}] {optimizer}: max |keras - plain torch| = {difference:.3g}")
    # float32 rounding (measured: up to 4e-7), against moves of several 1e-2.
    assert difference < 2e-6
    assert max(float(np.max(np.abs(actual[p] - initial[p]))) for p in expected) > 0.02


def test_logs_period_and_group_learning_rates():
    model = _compiled_model()
    x, y = tiny_data()
    plan = RefinePlan(period_epochs=2, periods=2, decay_epochs=1)
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        verbose=0,
        callbacks=[RollbackRefine(tiny_partition(model), plan=plan, verbose=0)],
    )
    assert history.history["period"] == [1, 1, 2, 2]
    np.testing.assert_allclose(history.history["lr_head"], [0.1, 0.01, 0.01, 0.001])
    np.testing.assert_allclose(history.history["lr_B1"], [0.01, 0.001, 0.001, 0.0001])
    np.testing.assert_allclose(history.history["lr_B2"], [0.01, 0.001, 0.01, 0.001])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_base_cy_restarts_rates_without_rolling_back(optimizer):
    model = _compiled_model(optimizer)
    pretrained = weights_by_path(model)
    x, y = tiny_data()
    probe = PeriodStartProbe()
    refine = RollbackRefine(
        tiny_partition(model),
        plan=RefinePlan(period_epochs=1, periods=2, rollback=False),
        verbose=0,
    )
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[refine, probe], verbose=0)
    for path, value in probe.before_first_step[1].items():
        np.testing.assert_array_equal(value, probe.end_of_epoch[0][path])
    assert not np.array_equal(
        probe.before_first_step[1]["b4_conv/kernel"], pretrained["b4_conv/kernel"]
    )
    assert refine.epoch_records[1]["rolled_back"] == ()
    for slot in probe.state_before[1].values():
        assert all(np.all(m == 0) for m in slot.values())


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fc_warmup_keeps_every_backbone_variable_bit_identical(optimizer):
    model = _compiled_model(optimizer)
    partition = tiny_partition(model)
    pretrained = weights_by_path(model)
    x, y = tiny_data()
    probe = PeriodStartProbe()
    plan = RefinePlan(period_epochs=1, periods=1, warmup_epochs=2)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[RollbackRefine(partition, plan=plan, verbose=0), probe],
    )
    # Every variable of the backbone, BatchNorm moving statistics included.
    backbone = [w.path for w in partition.variables(model, partition.block_names)]
    assert any("moving_variance" in path for path in backbone)
    for path in backbone:
        for epoch in (0, 1):
            np.testing.assert_array_equal(
                probe.end_of_epoch[epoch][path], pretrained[path], err_msg=f"{path}, {epoch=}"
            )
        # Fine-tuning after the warm-up moves everything again, statistics included.
        assert not np.array_equal(probe.end_of_epoch[2][path], pretrained[path]), path
    assert not np.array_equal(probe.end_of_epoch[0]["fc/kernel"], pretrained["fc/kernel"])
    # The model is handed back trainable as it came.
    assert all(layer.trainable for layer in model.layers)
    assert len(model.trainable_weights) == 4 * 4 + 2


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_snapshot_file_makes_a_resumed_run_roll_back_to_pretrained(tmp_path, optimizer):
    x, y = tiny_data()
    snapshot_path = tmp_path / "pretrained.npz"
    plan = RefinePlan(period_epochs=1, periods=3)

    straight = _compiled_model(optimizer)
    straight.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[RollbackRefine(tiny_partition(straight), plan=plan, verbose=0)],
    )

    first = _compiled_model(optimizer)
    first.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[
            RollbackRefine(tiny_partition(first), plan=plan, snapshot=snapshot_path, verbose=0)
        ],
    )
    assert snapshot_path.exists()
    # A new process: a new model object holding the interrupted run's weights and optimizer.
    resumed = _compiled_model(optimizer)
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.set_weights(first.get_weights())
    for a, b in zip(resumed.optimizer.variables, first.optimizer.variables):
        a.assign(b)
    resumed.fit(
        x,
        y,
        batch_size=8,
        initial_epoch=1,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[
            RollbackRefine(
                tiny_partition(resumed), plan=plan, snapshot=str(snapshot_path), verbose=0
            )
        ],
    )
    for a, b in zip(weights_by_path(resumed).values(), weights_by_path(straight).values()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _assert_fit_fails_before_training(model, match, callback, **fit_kwargs):
    x, y = tiny_data()
    before = weights_by_path(model)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, batch_size=8, verbose=0, callbacks=[callback], **fit_kwargs)
    for path, value in weights_by_path(model).items():
        np.testing.assert_array_equal(value, before[path], err_msg=f"{path} changed: a step ran")


def test_incompatible_optimizer_fails_before_any_step():
    model = tiny_cnn()
    model.compile(optimizer=keras.optimizers.SGD(momentum=0.9), loss=LOSS)
    _assert_fit_fails_before_training(
        model,
        "LayerwiseSGD or keras_rollback.LayerwiseAdamW.*optimizer=SGD",
        RollbackRefine(tiny_partition(model), period_epochs=2),
        epochs=4,
    )


@pytest.mark.parametrize(
    "callback_kwargs, epochs, match",
    [
        ({"period_epochs": 40}, 100, "epochs=100 does not fit"),
        ({"period_epochs": 2, "periods": 3}, 5, "epochs=5 does not fit"),
        ({"period_epochs": 2, "periods": 3}, 8, "epochs=8 does not fit"),
        ({"period_epochs": 1}, 6, "periods=6 needs 5 kept blocks"),
    ],
)
def test_epochs_that_do_not_fit_the_plan_fail_before_any_step(callback_kwargs, epochs, match):
    model = _compiled_model()
    _assert_fit_fails_before_training(
        model, match, RollbackRefine(tiny_partition(model), **callback_kwargs), epochs=epochs
    )


def test_resuming_without_snapshot_fails_before_any_step():
    model = _compiled_model()
    _assert_fit_fails_before_training(
        model,
        "starts at epoch 2 but no pre-trained snapshot",
        RollbackRefine(tiny_partition(model), period_epochs=2),
        epochs=4,
        initial_epoch=2,
    )


def test_partition_of_another_model_fails_before_any_step():
    model = _compiled_model()
    other = tiny_cnn()
    inputs = keras.Input((8, 8, 3))
    wrapped = keras.Model(inputs, keras.layers.Dense(3, name="fc2")(other(inputs)))
    wrapped.compile(optimizer=LayerwiseSGD(), loss=LOSS)
    _assert_fit_fails_before_training(
        wrapped, "fc2/kernel", RollbackRefine(tiny_partition(model), period_epochs=2), epochs=4
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"period_epochs": 0}, "period_epochs=0"),
        ({"periods": -1}, "periods=-1"),
        ({"plan": RefinePlan(kept_blocks=[["conv9_x"]])}, "unknown blocks \\['conv9_x'\\]"),
        ({"plan": RefinePlan(), "periods": 4}, "either `plan`"),
        ({"snapshot": 3}, "snapshot=3"),
        ({"verbose": 2}, "verbose=2"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RollbackRefine(tiny_partition(tiny_cnn()), **kwargs)


def test_corrupt_snapshot_file_is_reported_by_path(tmp_path):
    path = tmp_path / "pretrained.npz"
    path.write_bytes(b"not a zip file")
    model = _compiled_model()
    _assert_fit_fails_before_training(
        model,
        "pretrained.npz",
        RollbackRefine(tiny_partition(model), period_epochs=2, snapshot=path),
        epochs=4,
    )


def test_snapshot_of_another_architecture_is_reported(tmp_path):
    path = tmp_path / "pretrained.npz"
    grey = tiny_cnn(input_shape=(8, 8, 1))
    PretrainedSnapshot.capture(grey, tiny_partition(grey)).save(path)
    model = _compiled_model()
    _assert_fit_fails_before_training(
        model,
        r"pretrained.npz.*b1_conv/kernel: \(3, 3, 1, 4\) != \(3, 3, 3, 4\)",
        RollbackRefine(tiny_partition(model), period_epochs=2, snapshot=path),
        epochs=4,
    )


def test_fresh_start_with_a_stale_snapshot_file_is_refused(tmp_path):
    path = tmp_path / "pretrained.npz"
    other = tiny_cnn(seed=7)
    PretrainedSnapshot.capture(other, tiny_partition(other)).save(path)
    model = _compiled_model()
    _assert_fit_fails_before_training(
        model,
        "differs from the model's weights",
        RollbackRefine(tiny_partition(model), period_epochs=2, snapshot=path),
        epochs=4,
    )


def test_resuming_mid_period_says_so(tmp_path, capsys):
    path = tmp_path / "pretrained.npz"
    x, y = tiny_data()
    model = _compiled_model()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[
            RollbackRefine(tiny_partition(model), period_epochs=2, periods=2, snapshot=path)
        ],
    )
    capsys.readouterr()
    model.fit(
        x,
        y,
        batch_size=8,
        initial_epoch=2,
        epochs=4,
        verbose=0,
        callbacks=[
            RollbackRefine(tiny_partition(model), period_epochs=2, periods=2, snapshot=path)
        ],
    )
    assert "period 2: rolled back" in capsys.readouterr().out
    resumed = _compiled_model()
    resumed.set_weights(model.get_weights())
    resumed.fit(
        x,
        y,
        batch_size=8,
        initial_epoch=3,
        epochs=4,
        verbose=0,
        callbacks=[
            RollbackRefine(tiny_partition(resumed), period_epochs=2, periods=2, snapshot=path)
        ],
    )
    assert "resumed in period 2 with the pre-trained snapshot" in capsys.readouterr().out
