"""L2SP through model.fit on the active backend, against SGD on the L2-SP loss computed in numpy."""

import warnings

import keras
import numpy as np
import pytest

from keras_rollback import L2SP
from keras_rollback import BlockPartition
from keras_rollback import LayerwiseSGD
from keras_rollback import PretrainedSnapshot
from keras_rollback.callbacks.l2_sp import L2SPPenalty

LEARNING_RATE = 0.1
LAYERS = ("b1_dense", "b2_dense", "fc")


def _mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, activation="tanh", name="b1_dense")(inputs)
    x = keras.layers.Dense(3, activation="tanh", name="b2_dense")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))


def _compiled_mlp(optimizer=None):
    model = _mlp()
    model.compile(optimizer=optimizer or keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    return model


def _partition(model):
    return BlockPartition(model, blocks={"B1": "b1_", "B2": "b2_"}, head="fc/")


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def _weights(model):
    return {w.path: keras.ops.convert_to_numpy(w).astype(np.float64) for w in model.weights}


def _mse_and_gradients(weights, x, y):
    """The MSE of the tanh MLP and its gradient for every weight, by hand (float64)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    activations = [x]
    for layer in LAYERS:
        z = activations[-1] @ weights[f"{layer}/kernel"] + weights[f"{layer}/bias"]
        activations.append(z if layer == "fc" else np.tanh(z))
    error = activations[-1] - y
    gradients = {}
    delta = 2 * error / error.size  # d mean((out - y)^2) / d out
    for i in reversed(range(len(LAYERS))):
        layer = LAYERS[i]
        gradients[f"{layer}/kernel"] = activations[i].T @ delta
        gradients[f"{layer}/bias"] = delta.sum(axis=0)
        if i:
            delta = (delta @ weights[f"{layer}/kernel"].T) * (1 - activations[i] ** 2)
    return float(np.mean(error**2)), gradients


def _l2_sp_by_hand(weights, anchor, alpha, beta):
    """The L2-SP penalty and its gradient: alpha/2 ||w - w0||^2 on blocks, beta/2 ||w||^2 on fc."""
    penalty, gradients = 0.0, {}
    for path, w in weights.items():
        if path.startswith("fc/"):
            strength, difference = beta, w
        else:
            strength, difference = alpha[path[:2].upper()], w - anchor[path]
        penalty += strength / 2 * float(np.sum(difference**2))
        gradients[path] = strength * difference
    return penalty, gradients


def _moved_snapshot(model, partition, seed=1):
    """A 'pre-trained' snapshot away from the model's current weights."""
    rng = np.random.default_rng(seed)
    return PretrainedSnapshot(
        {
            w.path: (keras.ops.convert_to_numpy(w) + rng.normal(scale=0.5, size=w.shape)).astype(
                "float32"
            )
            for w in partition.variables(model, partition.block_names)
        }
    )


def test_one_sgd_step_is_sgd_on_the_l2_sp_loss_with_per_block_alpha():
    model = _compiled_mlp()
    partition = _partition(model)
    snapshot = _moved_snapshot(model, partition)
    alpha, beta = {"B1": 0.7, "B2": 0.05}, 0.3
    before = _weights(model)
    x, y = _data()

    history = model.fit(
        x,
        y,
        batch_size=len(x),
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[L2SP(partition, alpha=alpha, beta=beta, snapshot=snapshot)],
    )

    anchor = {p: a.astype(np.float64) for p, a in snapshot.arrays.items()}
    mse, data_gradients = _mse_and_gradients(before, x, y)
    penalty, penalty_gradients = _l2_sp_by_hand(before, anchor, alpha, beta)
    after = _weights(model)
    for path, w in before.items():
        expected = w - LEARNING_RATE * (data_gradients[path] + penalty_gradients[path])
        np.testing.assert_allclose(after[path], expected, rtol=0, atol=1e-6, err_msg=path)
    # The penalty is part of the logged loss, as Keras' own weight regularizers are.
    assert history.history["loss"][0] == pytest.approx(mse + penalty, rel=1e-5)
    # Removed at the end of training: evaluate (and any later fit) sees the data loss alone.
    assert all(w.regularizer is None for w in model.weights)
    later_mse, _ = _mse_and_gradients(after, x, y)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(later_mse, rel=1e-5)


def test_weights_at_the_anchor_get_no_l2_sp_gradient():
    x, y = _data()
    plain = _compiled_mlp()
    plain.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    model = _compiled_mlp()
    partition = _partition(model)
    # Anchor captured at epoch 0: the weights are at it, so only the head's beta term acts.
    l2_sp = L2SP(partition, alpha=5.0, beta=0.0)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0, callbacks=[l2_sp])

    for path, w in _weights(plain).items():
        np.testing.assert_allclose(_weights(model)[path], w, rtol=0, atol=1e-7, err_msg=path)
    assert sorted(l2_sp.snapshot.arrays) == sorted(
        w.path for w in partition.variables(model, partition.block_names)
    )


def test_each_fit_uses_its_own_anchor():
    # A second fit with another snapshot must not reuse the step traced with the first's anchors.
    model = _compiled_mlp()
    partition = _partition(model)
    x, y = _data()
    model.fit(
        x,
        y,
        batch_size=len(x),
        epochs=1,
        verbose=0,
        callbacks=[
            L2SP(partition, alpha=0.5, beta=0.0, snapshot=_moved_snapshot(model, partition))
        ],
    )
    snapshot = _moved_snapshot(model, partition, seed=2)
    before = _weights(model)
    model.fit(
        x,
        y,
        batch_size=len(x),
        epochs=1,
        verbose=0,
        callbacks=[L2SP(partition, alpha=0.5, beta=0.0, snapshot=snapshot)],
    )
    anchor = {p: a.astype(np.float64) for p, a in snapshot.arrays.items()}
    _, data_gradients = _mse_and_gradients(before, x, y)
    _, penalty_gradients = _l2_sp_by_hand(before, anchor, {"B1": 0.5, "B2": 0.5}, 0.0)
    for path, w in _weights(model).items():
        expected = before[path] - LEARNING_RATE * (data_gradients[path] + penalty_gradients[path])
        np.testing.assert_allclose(w, expected, rtol=0, atol=1e-6, err_msg=path)


def _start_training(model, l2_sp):
    """What `fit` does to the callback before the first step (no step is traced or run)."""
    l2_sp.set_model(model)
    l2_sp.on_train_begin()
    l2_sp.on_epoch_begin(0)
    l2_sp.on_train_end()


def test_warns_when_the_optimizer_decays_the_backbone():
    model = _compiled_mlp(LayerwiseSGD(weight_decay=5e-4))
    with pytest.warns(UserWarning, match="weight decay 0.0005 on 4 backbone variables"):
        _start_training(model, L2SP(_partition(model)))

    model = _compiled_mlp(keras.optimizers.AdamW(weight_decay=0.01))
    with pytest.warns(UserWarning, match="AdamW"):
        _start_training(model, L2SP(_partition(model)))

    model = _mlp()
    optimizer = keras.optimizers.AdamW(weight_decay=0.01)
    partition = _partition(model)
    optimizer.exclude_from_weight_decay(var_list=partition.variables(model, ["B1", "B2"]))
    model.compile(optimizer=optimizer, loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _start_training(model, L2SP(partition))


def test_penalty_value_and_config():
    penalty = L2SPPenalty(0.1, anchor=np.ones((2, 2), "float32"))
    assert float(keras.ops.convert_to_numpy(penalty(keras.ops.zeros((2, 2))))) == pytest.approx(0.2)
    restored = keras.regularizers.deserialize(keras.regularizers.serialize(penalty))
    assert isinstance(restored, L2SPPenalty)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored.anchor), np.ones((2, 2)))


def test_arguments_are_checked():
    partition = _partition(_mlp())
    with pytest.raises(ValueError, match=r"Received: alpha=-1\. .*Received: beta='x'"):
        L2SP(partition, alpha=-1, beta="x")
    with pytest.raises(ValueError, match=r"unknown names \['B3'\], missing blocks \['B2'\]"):
        L2SP(partition, alpha={"B1": 0.1, "B3": 0.1})
    with pytest.raises(ValueError, match=r"Received: alpha\['B2'\]=-0.5"):
        L2SP(partition, alpha={"B1": 0.1, "B2": -0.5})
    with pytest.raises(ValueError, match="Received: snapshot=3"):
        L2SP(partition, snapshot=3)


def test_a_variable_with_its_own_regularizer_is_refused():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="b1_dense")(inputs)
    x = keras.layers.Dense(3, name="b2_dense")(x)
    outputs = keras.layers.Dense(2, kernel_regularizer="l2", name="fc")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="'fc/kernel' already has a regularizer"):
        _start_training(model, L2SP(_partition(model)))
    # beta=0 leaves the head alone, so its own regularizer is fine.
    _start_training(model, L2SP(_partition(model), beta=0.0))
    assert isinstance(model.get_layer("fc").kernel.regularizer, keras.regularizers.L2)
    assert model.get_layer("b1_dense").kernel.regularizer is None
