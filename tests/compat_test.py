"""compat: every private Keras access still works with the installed Keras."""

import keras
import numpy as np
import pytest

from keras_rollback import LayerwiseSGD
from keras_rollback import compat


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    outputs = keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs)


def test_functional_graph_nodes_and_arguments():
    model = _model()
    assert compat.functional_graph(model) is model
    assert compat.functional_graph(keras.layers.Dense(2)) is None
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert compat.functional_graph(sequential) is not None
    depths = compat.nodes_by_depth(model)
    operations = {node.operation.name for nodes in depths.values() for node in nodes}
    assert {"conv", "fc"} <= operations
    conv_node = next(n for nodes in depths.values() for n in nodes if n.operation.name == "conv")
    replacement = keras.KerasTensor((1, 10, 10, 3))
    args, _ = compat.fill_in_arguments(conv_node, {id(conv_node.input_tensors[0]): replacement})
    assert args[0] is replacement


def test_fit_initial_epoch_is_what_fit_resumes_from():
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 8, 8, 3), "float32"), np.zeros((4, 2), "float32")
    compat.set_fit_initial_epoch(model, 2)
    assert compat.fit_initial_epoch(model) == 2
    history = model.fit(x, y, epochs=3, verbose=0)
    assert history.epoch == [2]
    compat.set_fit_initial_epoch(model, None)
    assert compat.fit_initial_epoch(model) is None


def test_optimizer_slots():
    variables = [keras.Variable(np.zeros(3), name="a"), keras.Variable(np.zeros(2), name="b")]
    optimizer = LayerwiseSGD()
    optimizer.build(variables)
    assert list(compat.optimizer_trainable_variables(optimizer)) == variables
    assert compat.optimizer_variable_index(optimizer, variables[1]) == 1


def test_optimizer_decays_variable_follows_exclusions():
    kept, excluded = (
        keras.Variable(np.zeros(3), name="kept"),
        keras.Variable(np.zeros(2), name="bias"),
    )
    optimizer = keras.optimizers.AdamW(weight_decay=0.01)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    assert compat.optimizer_decays_variable(optimizer, kept)
    assert not compat.optimizer_decays_variable(optimizer, excluded)
    assert not compat.optimizer_decays_variable(keras.optimizers.SGD(), kept)


def test_print_msg(capsys):
    compat.print_msg("hello")
    assert "hello" in capsys.readouterr().out


def test_the_keras_names_that_the_multi_worker_fix_replaces_still_exist():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fix patches the TensorFlow trainer only")
    from keras.src.backend.tensorflow import trainer

    for name in ("reduce_per_replica", "_collective_all_reduce_multi_worker"):
        assert callable(getattr(trainer, name)), name
    assert callable(trainer.TensorFlowTrainer._maybe_symbolic_build)
    compat.fix_tensorflow_trainer_for_multi_worker_strategy()
    compat.fix_tensorflow_trainer_for_multi_worker_strategy()  # Applied once.
    # Without a multi-worker strategy Keras' own code runs: a plain fit still works.
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.zeros((4, 8, 8, 3), "float32"), np.zeros((4, 2), "float32"), verbose=0)
    assert np.isfinite(history.history["loss"][0])
