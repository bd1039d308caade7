"""BlockDiagnostics through model.fit on the active backend, against numpy and Keras' own SGD step."""

import csv

import keras
import numpy as np
import pytest
from rollback_checks import PeriodStartProbe
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import BlockDiagnostics
from keras_rollback import LayerwiseSGD
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _numpy_drift(model, partition, weights, pretrained, block):
    paths = [w.path for w in partition.variables(model, [block]) if w.trainable]
    moved = sum(np.sum(np.square(weights[p] - pretrained[p], dtype=np.float64)) for p in paths)
    size = sum(np.sum(np.square(pretrained[p], dtype=np.float64)) for p in paths)
    return np.sqrt(moved / size)


def test_drift_per_block_with_rollback_and_warmup(tmp_path):
    model = tiny_cnn()
    model.compile(optimizer=LayerwiseSGD(momentum=0.9), loss=LOSS)
    partition = tiny_partition(model)
    pretrained = weights_by_path(model)
    x, y = tiny_data()
    probe = PeriodStartProbe()
    plan = RefinePlan(period_epochs=1, periods=2, warmup_epochs=1)
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[
            RollbackRefine(partition, plan=plan, verbose=0),
            BlockDiagnostics(partition),
            probe,
            keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        ],
    )
    for epoch in range(3):
        for block in partition.block_names:
            np.testing.assert_allclose(
                history.history[f"drift_{block}"][epoch],
                _numpy_drift(model, partition, probe.end_of_epoch[epoch], pretrained, block),
                rtol=1e-6,
            )
    # The warm-up freezes the backbone: no drift at all.
    assert all(history.history[f"drift_{b}"][0] == 0 for b in partition.block_names)
    # Period 2 rolled B2..B4 back and trained them one epoch; all blocks moved.
    assert all(history.history[f"drift_{b}"][2] > 0 for b in partition.block_names)
    with open(tmp_path / "log.csv") as f:
        assert "drift_B1" in next(csv.reader(f))


def test_gradient_norms_match_keras_sgd_step():
    """The sampled gradient norm equals the size of a plain SGD step (lr 1) on the same batch."""
    x, y = tiny_data()
    model = tiny_cnn()
    # Learning rate 0: the weights stay at w0, where the gradient is sampled.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=LOSS)
    partition = tiny_partition(model)
    diagnostics = BlockDiagnostics(partition, gradient_batch=(x, y), every_n_steps=1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[diagnostics])

    reference = tiny_cnn()
    reference.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=LOSS)
    before = weights_by_path(reference)
    reference.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    after = weights_by_path(reference)
    record = diagnostics.epoch_records[0]
    for group in partition.group_names:
        paths = [w.path for w in reference.trainable_weights if partition.group_of(w.path) == group]
        step = np.sqrt(
            sum(np.sum(np.square(after[p] - before[p], dtype=np.float64)) for p in paths)
        )
        np.testing.assert_allclose(record[f"grad_norm_{group}"], step, rtol=1e-4, err_msg=group)


def test_sampling_gradients_leaves_training_unchanged():
    x, y = tiny_data()
    runs = []
    for callbacks in ([], "diagnostics"):
        model = tiny_cnn()
        model.compile(optimizer=LayerwiseSGD(momentum=0.9, nesterov=True), loss=LOSS)
        if callbacks:
            callbacks = [
                BlockDiagnostics(
                    tiny_partition(model), gradient_batch=(x[:8], y[:8]), every_n_steps=1
                )
            ]
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
        runs.append(weights_by_path(model))
    for path, value in runs[0].items():
        np.testing.assert_array_equal(runs[1][path], value, err_msg=path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_steps": 0}, "every_n_steps=0"),
        ({"gradient_batch": "xy"}, "gradient_batch"),
        ({"snapshot": 3}, "snapshot=3"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockDiagnostics(tiny_partition(tiny_cnn()), **kwargs)
