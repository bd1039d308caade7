"""refine_tune (one fit per period, fresh optimizer) against the RollbackRefine callback path."""

import keras
import numpy as np
import pytest
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import LayerwiseAdamW
from keras_rollback import LayerwiseSGD
from keras_rollback import RollbackRefine
from keras_rollback import refine_tune

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture
def deterministic_ops():
    # TensorFlow cannot switch determinism off again; JAX and torch run these CPU kernels
    # deterministically already.
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


OPTIMIZERS = {
    "sgd": LayerwiseSGD,
    "adamw": lambda: LayerwiseAdamW(weight_decay=0.05),
    "adamw_loss_scaled": lambda: keras.optimizers.LossScaleOptimizer(
        LayerwiseAdamW(weight_decay=0.05)
    ),
}


def _model(optimizer="sgd"):
    model = tiny_cnn(seed=3)
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss=LOSS, metrics=["accuracy"])
    return model


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_loop_and_callback_give_the_same_weights(deterministic_ops, optimizer):
    x, y = tiny_data(n=24)
    by_callback = _model(optimizer)
    callback_history = by_callback.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[RollbackRefine(tiny_partition(by_callback), period_epochs=2, verbose=0)],
    )
    by_loop = _model(optimizer)
    loop_history = refine_tune(
        by_loop,
        tiny_partition(by_loop),
        x,
        y=y,
        batch_size=8,
        shuffle=False,
        periods=2,
        period_epochs=2,
        verbose=0,
    )
    start = weights_by_path(_model())
    expected = weights_by_path(by_callback)
    difference = 0.0
    for path, value in weights_by_path(by_loop).items():
        np.testing.assert_allclose(value, expected[path], rtol=0, atol=1e-6, err_msg=path)
        assert not np.array_equal(value, start[path]), f"{path} never trained"
        difference = max(difference, float(np.max(np.abs(value - expected[path]))))
    print(f"[{keras.backend.backend()}] {optimizer}: max |loop - callback| = {difference:.3g}")
    assert loop_history.epoch == [0, 1, 2, 3]
    assert loop_history.history["period"] == [1, 1, 2, 2]
    np.testing.assert_allclose(
        loop_history.history["loss"], callback_history.history["loss"], rtol=1e-5
    )


@pytest.mark.parametrize(
    "optimizer, optimizer_class",
    [("sgd", LayerwiseSGD), ("adamw", LayerwiseAdamW), ("adamw_loss_scaled", LayerwiseAdamW)],
)
def test_loop_recompiles_with_a_fresh_optimizer_per_period(optimizer, optimizer_class):
    x, y = tiny_data()
    model = _model(optimizer)
    seen = []

    class RecordOptimizer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.optimizer)

    history = refine_tune(
        model,
        tiny_partition(model),
        x,
        y=y,
        batch_size=8,
        periods=3,
        period_epochs=1,
        callbacks=[RecordOptimizer()],
        verbose=0,
    )
    assert len({id(o) for o in seen}) == 3
    # The unwrapped optimizer is fresh too: its count started at the last recompile.
    inner = [getattr(o, "inner_optimizer", o) for o in seen]
    assert all(isinstance(o, optimizer_class) for o in inner)
    assert int(inner[-1].iterations) == 2  # One epoch of two steps since the last recompile.
    # Recompiling kept the loss and the metrics.
    assert len(history.history["accuracy"]) == len(history.history["loss"]) == 3


@pytest.mark.parametrize("reserved", ["epochs", "initial_epoch"])
def test_loop_owns_the_epoch_arguments(reserved):
    model = _model()
    x, y = tiny_data()
    with pytest.raises(ValueError, match=f"{reserved}=3"):
        refine_tune(model, tiny_partition(model), x, y=y, **{reserved: 3})


def test_loop_needs_a_compiled_model():
    model = tiny_cnn()
    x, y = tiny_data()
    with pytest.raises(ValueError, match="not compiled"):
        refine_tune(model, tiny_partition(model), x, y=y)
