"""RunCheckpoint: what it writes each epoch, what a resumed fit restores, and which damaged files it skips."""

import json
import os

import keras
import numpy as np
import pytest
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import LayerwiseSGD
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine
from keras_rollback import compat
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _compiled_model(input_shape=(8, 8, 3)):
    model = tiny_cnn(input_shape=input_shape)
    model.compile(optimizer=LayerwiseSGD(momentum=0.9, nesterov=True, weight_decay=5e-4), loss=LOSS)
    return model


def _fit(model, epochs, callbacks, **kwargs):
    x, y = tiny_data()
    return model.fit(
        x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks, **kwargs
    )


def _optimizer_state(model):
    # Keyed by the name within the optimizer: each optimizer instance has its own path prefix.
    return {
        v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v).copy()
        for v in model.optimizer.variables
    }


class InterruptAt(keras.callbacks.Callback):
    """Ends `fit` with an exception when `epoch` begins, as a crash would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


def _interrupted_fit(model, directory, epochs, at, callbacks=()):
    with pytest.raises(KeyboardInterrupt):
        _fit(model, epochs, [*callbacks, RunCheckpoint(directory), InterruptAt(at)])


def test_saves_each_epoch_with_a_checksummed_manifest_and_keeps_the_newest(tmp_path):
    model = _compiled_model()
    _fit(model, 3, [RunCheckpoint(tmp_path, keep=2)])
    assert sorted(os.listdir(tmp_path)) == [
        "epoch-000002.json",
        "epoch-000002.weights.h5",
        "epoch-000003.json",
        "epoch-000003.weights.h5",
    ]
    manifest = json.loads((tmp_path / "epoch-000003.json").read_text())
    assert manifest["epoch"] == 3
    assert manifest["weights"] == "epoch-000003.weights.h5"
    assert manifest["bytes"] == os.path.getsize(tmp_path / "epoch-000003.weights.h5")
    assert len(manifest["sha256"]) == 64
    assert RunCheckpoint(tmp_path).newest() == {
        "epoch": 3,
        "weights": str(tmp_path / "epoch-000003.weights.h5"),
        "manifest": str(tmp_path / "epoch-000003.json"),
    }


def test_resumed_fit_restores_weights_and_optimizer_and_continues_at_the_next_epoch(
    tmp_path, capsys
):
    straight = _compiled_model()
    _fit(straight, 3, [])

    _interrupted_fit(_compiled_model(), tmp_path, epochs=3, at=1)
    resumed = tiny_cnn(seed=5)  # Other initial weights: everything must come from the checkpoint.
    resumed.compile(
        optimizer=LayerwiseSGD(momentum=0.9, nesterov=True, weight_decay=5e-4), loss=LOSS
    )
    history = _fit(resumed, 3, [RunCheckpoint(tmp_path)])

    assert len(history.history["loss"]) == 2
    assert "RunCheckpoint: resumed from" in capsys.readouterr().out
    assert compat.fit_initial_epoch(resumed) is None  # Not inherited by a later fit.
    for path, value in weights_by_path(straight).items():
        np.testing.assert_allclose(weights_by_path(resumed)[path], value, atol=1e-6, err_msg=path)
    for path, value in _optimizer_state(straight).items():
        np.testing.assert_allclose(_optimizer_state(resumed)[path], value, atol=1e-6, err_msg=path)


def test_resume_at_a_period_start_rolls_back_to_the_saved_snapshot(tmp_path):
    plan = RefinePlan(period_epochs=1, periods=3)
    straight = _compiled_model()
    _fit(straight, 3, [RollbackRefine(tiny_partition(straight), plan=plan, verbose=0)])

    snapshot = tmp_path / "pretrained.npz"
    first = _compiled_model()
    refine = RollbackRefine(tiny_partition(first), plan=plan, snapshot=snapshot, verbose=0)
    _interrupted_fit(first, tmp_path / "checkpoints", epochs=3, at=1, callbacks=[refine])
    resumed = _compiled_model()
    resumed.set_weights(
        [w * 0 + 3.0 for w in resumed.get_weights()]
    )  # Not the pre-trained weights.
    refine = RollbackRefine(tiny_partition(resumed), plan=plan, snapshot=snapshot, verbose=0)
    _fit(resumed, 3, [refine, RunCheckpoint(tmp_path / "checkpoints")])

    assert [r["epoch"] for r in refine.epoch_records] == [1, 2]
    for path, value in weights_by_path(straight).items():
        np.testing.assert_allclose(weights_by_path(resumed)[path], value, atol=1e-6, err_msg=path)


def test_rerunning_a_finished_run_trains_no_further_epoch(tmp_path):
    model = _compiled_model()
    _fit(model, 2, [RunCheckpoint(tmp_path)])
    again = _compiled_model()
    history = _fit(again, 2, [RunCheckpoint(tmp_path)])
    assert history.history == {}
    for path, value in weights_by_path(model).items():
        np.testing.assert_array_equal(weights_by_path(again)[path], value, err_msg=path)


def _damage_flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])


def _damage_delete(path):
    path.unlink()


def _damage_manifest(path):
    path.with_name(path.name.replace(".weights.h5", ".json")).write_text("{not json")


@pytest.mark.parametrize(
    "damage, match",
    [
        (_damage_flip, r"epoch-000003\.weights\.h5' is truncated or corrupt"),
        (_damage_truncate, r"epoch-000003\.weights\.h5' is truncated or corrupt"),
        (_damage_delete, r"epoch-000003\.weights\.h5' is missing"),
        (_damage_manifest, r"epoch-000003\.json' is unreadable"),
    ],
)
def test_damaged_newest_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, damage, match):
    model = _compiled_model()
    _fit(model, 2, [RunCheckpoint(tmp_path)])
    after_two_epochs = weights_by_path(model)
    _fit(model, 3, [RunCheckpoint(tmp_path)])
    damage(tmp_path / "epoch-000003.weights.h5")

    resumed = _compiled_model()
    checkpoint = RunCheckpoint(tmp_path)
    resumed.optimizer.build(resumed.trainable_variables)
    checkpoint.set_model(resumed)
    with pytest.warns(UserWarning, match=match):
        checkpoint.on_train_begin()
    assert compat.fit_initial_epoch(resumed) == 2
    for path, value in after_two_epochs.items():
        np.testing.assert_array_equal(weights_by_path(resumed)[path], value, err_msg=path)


def test_weights_file_without_manifest_is_ignored(tmp_path):
    _fit(_compiled_model(), 1, [RunCheckpoint(tmp_path)])
    (tmp_path / "epoch-000002.weights.h5").write_bytes(b"renamed, but killed before its manifest")
    assert RunCheckpoint(tmp_path).newest()["epoch"] == 1


def test_no_usable_checkpoint_starts_from_epoch_zero_with_warnings(tmp_path):
    _fit(_compiled_model(), 1, [RunCheckpoint(tmp_path)])
    _damage_flip(tmp_path / "epoch-000001.weights.h5")
    model = _compiled_model()
    with pytest.warns(UserWarning, match="epoch-000001.weights.h5' is truncated or corrupt"):
        history = _fit(model, 2, [RunCheckpoint(tmp_path)])
    assert len(history.history["loss"]) == 2
    assert sorted(os.listdir(tmp_path))[-1] == "epoch-000002.weights.h5"


def test_checkpoint_of_another_architecture_is_reported_by_path(tmp_path):
    _fit(_compiled_model(), 1, [RunCheckpoint(tmp_path)])
    grey = _compiled_model(input_shape=(8, 8, 1))
    x, y = tiny_data(input_shape=(8, 8, 1))
    with pytest.raises(
        ValueError, match=r"epoch-000001\.weights\.h5' does not fit model 'tiny_cnn'"
    ):
        grey.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[RunCheckpoint(tmp_path)])


def test_epoch_with_non_finite_loss_is_not_saved(tmp_path):
    model = _compiled_model()
    _fit(model, 1, [RunCheckpoint(tmp_path)])
    checkpoint = RunCheckpoint(tmp_path)
    checkpoint.set_model(model)
    with pytest.warns(UserWarning, match="Epoch 2 ended with loss nan: not saved"):
        checkpoint.on_epoch_end(1, {"loss": float("nan")})
    assert RunCheckpoint(tmp_path).newest()["epoch"] == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"directory": ""}, "directory=''"),
        ({"directory": None}, "directory=None"),
        ({"keep": 0}, "keep=0"),
        ({"keep": True}, "keep=True"),
        ({"verbose": 2}, "verbose=2"),
    ],
)
def test_bad_arguments_raise_at_construction(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunCheckpoint(**{"directory": tmp_path, **kwargs})


def test_resumed_run_draws_the_same_dropout_masks(tmp_path):
    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        # Seeded: on torch an unseeded Dropout draws from torch's global RNG instead.
        hidden = keras.layers.Dropout(0.5, seed=1)(keras.layers.Dense(8, name="hidden")(inputs))
        net = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
        net.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return net

    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    y = np.zeros((16, 2), "float32")
    straight = model()
    straight.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[RunCheckpoint(tmp_path / "straight")],
    )
    first = model()
    first.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[RunCheckpoint(tmp_path / "resumed")],
    )
    resumed = model()  # A new process: fresh generator states, restored from the manifest.
    resumed.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[RunCheckpoint(tmp_path / "resumed")],
    )
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
