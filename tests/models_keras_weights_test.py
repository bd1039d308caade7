"""Tests of keras_rollback/models/keras_weights.py: all-or-nothing `.weights.h5` loading."""

import keras
import numpy as np
import pytest

from keras_rollback.models.keras_weights import load_weights_strict


def _model(units=(4, 4, 4), seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    x = inputs
    for i, n in enumerate(units):
        x = keras.layers.Dense(n, name=f"dense_{i}")(x)
    return keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(x))


def _values(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.weights.h5"
    model = _model(seed=1)
    model.save_weights(path)
    return model, path


def test_matching_file_loads_every_weight(saved):
    source, path = saved
    target = _model(seed=2)
    load_weights_strict(target, path)
    for expected, actual in zip(_values(source), _values(target)):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(
    "units,message",
    [
        (
            (4, 4),
            "0 weight\\(s\\) missing from the file: \\[\\]; 2 unexpected",
        ),  # keras would load silently
        ((4, 4, 4, 4), "2 weight\\(s\\) missing from the file"),
        ((4, 5, 4), "with another shape"),  # keras would fail after a partial load
    ],
)
def test_mismatching_file_loads_nothing(saved, units, message):
    _, path = saved
    target = _model(units, seed=3)
    before = _values(target)
    with pytest.raises(ValueError, match=f"does not fit model.*nothing was loaded.*{message}"):
        load_weights_strict(target, path)
    for expected, actual in zip(before, _values(target)):
        np.testing.assert_array_equal(actual, expected)


def test_bad_paths_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"Expected a '\.weights\.h5' file"):
        load_weights_strict(_model(), tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match=r"missing\.weights\.h5"):
        load_weights_strict(_model(), tmp_path / "missing.weights.h5")
