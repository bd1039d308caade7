"""WiSEFT through model.fit on the active backend: the final weights are the hand-computed mix."""

import keras
import numpy as np
import pytest
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import PretrainedSnapshot
from keras_rollback import WiSEFT

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _compiled_cnn():
    model = tiny_cnn()
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=LOSS)
    return model


def _fit(model, callbacks):
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)


class _FinalWeights(keras.callbacks.Callback):
    """Records the weights that `on_train_end` sees (put it before WiSEFT)."""

    def on_train_end(self, logs=None):
        self.weights = weights_by_path(self.model)  # On JAX, `self.model` syncs the state.


def _mix_by_hand(pretrained, fine_tuned, partition, coefficients):
    mixed = {}
    for path, w in fine_tuned.items():
        group = partition.group_of(path)
        if group == partition.head_name:
            mixed[path] = w
        else:
            a = coefficients[group]
            mixed[path] = (1 - a) * pretrained[path].astype(np.float64) + a * w.astype(np.float64)
    return mixed


def _assert_weights(model, expected):
    actual = weights_by_path(model)
    for path, w in expected.items():
        np.testing.assert_allclose(actual[path], w, rtol=0, atol=1e-6, err_msg=path)


def test_fit_ends_with_the_per_block_mix_of_pretrained_and_final_weights(tmp_path):
    plain = _compiled_cnn()
    _fit(plain, [])
    model = _compiled_cnn()
    partition = tiny_partition(model)
    pretrained = weights_by_path(model)
    coefficients = {"B1": 0.0, "B2": 0.25, "B3": 0.5, "B4": 1.0}
    probe = _FinalWeights()
    path = tmp_path / "pretrained.npz"
    _fit(model, [probe, WiSEFT(partition, mixing=coefficients, snapshot=path)])

    # What on_train_end saw is what the same fit without WiSEFT ends with (JAX: synced state).
    _assert_weights(plain, probe.weights)
    # After fit returns, the model holds the mix (JAX: the callback's assignments stick).
    _assert_weights(model, _mix_by_hand(pretrained, probe.weights, partition, coefficients))
    assert not np.allclose(probe.weights["b2_conv/kernel"], pretrained["b2_conv/kernel"])
    # The snapshot captured at epoch 0 was saved to the file given.
    saved = PretrainedSnapshot.load(path, partition).arrays
    assert all(np.array_equal(saved[p], pretrained[p]) for p in saved)


def test_depth_scaled_coefficients_and_apply_outside_fit():
    model = _compiled_cnn()
    partition = tiny_partition(model)
    snapshot = PretrainedSnapshot.capture(model, partition)
    rng = np.random.default_rng(0)
    for variable in model.weights:  # "Fine-tuned" elsewhere.
        variable.assign(variable + rng.normal(size=variable.shape).astype("float32"))
    fine_tuned = weights_by_path(model)

    wise_ft = WiSEFT(partition, mixing=0.2, depth_scaled=True, snapshot=snapshot)
    assert wise_ft.coefficients == pytest.approx({"B1": 0.2, "B2": 0.4, "B3": 0.6, "B4": 0.8})
    wise_ft.apply(model)
    _assert_weights(
        model, _mix_by_hand(snapshot.arrays, fine_tuned, partition, wise_ft.coefficients)
    )


def test_apply_without_pretrained_weights_is_an_error(tmp_path):
    model = tiny_cnn()
    partition = tiny_partition(model)
    with pytest.raises(ValueError, match="needs the pre-trained weights"):
        WiSEFT(partition).apply(model)
    with pytest.raises(ValueError, match="needs the pre-trained weights"):
        WiSEFT(partition, snapshot=tmp_path / "missing.npz").apply(model)


def test_arguments_are_checked():
    partition = tiny_partition(tiny_cnn())
    with pytest.raises(ValueError, match=r"Received: mixing=1.5\. .*Received: depth_scaled=1"):
        WiSEFT(partition, mixing=1.5, depth_scaled=1)
    with pytest.raises(ValueError, match=r"missing blocks \['B3', 'B4'\]"):
        WiSEFT(partition, mixing={"B1": 0.5, "B2": 0.5})
    with pytest.raises(ValueError, match="Expected a float: the depth rule"):
        WiSEFT(partition, mixing=dict.fromkeys(partition.block_names, 0.5), depth_scaled=True)
    with pytest.raises(ValueError, match="Received: partition=None"):
        WiSEFT(None)
