"""BlockDiagnostics through model.fit on the active backend, against numpy and Keras' own SGD step;
the drift picture, by what it draws."""

import csv

import keras
import numpy as np
import pytest
from picture_checks import assert_colour_at_points
from picture_checks import data_lines
from picture_checks import global_state_kept
from picture_checks import vertical_lines_at
from rollback_checks import PeriodStartProbe
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import BlockDiagnostics
from keras_rollback import LayerwiseSGD
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine
from keras_rollback.callbacks.block_diagnostics import block_drift_figure
from keras_rollback.callbacks.block_diagnostics import plot_block_drift

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


PICTURE_BLOCKS = ("stem", "conv2_x", "conv3_x")


def drift_series(block_index, epochs):
    # A decade apart per block: on the log axis no two lines meet, every point is its own.
    return [10.0 ** (block_index - 3) * (1 + epoch / 4) for epoch in range(epochs)]


def epoch_records(periods, with_gradients):
    records = []
    for epoch, period in enumerate(periods):
        record = {"epoch": epoch, "period": period}
        for index, block in enumerate(PICTURE_BLOCKS):
            record[f"drift_{block}"] = drift_series(index, len(periods))[epoch]
            if with_gradients:
                record[f"grad_norm_{block}"] = 1.0 + index
        if with_gradients:
            record["grad_norm_head"] = 9.0
        records.append(record)
    return records


def drift_runs():
    return {
        # Out of order: the picture sorts by epoch.
        "rollback": epoch_records([1, 1, 2, 2, 3, 3], with_gradients=True)[::-1],
        "base_cy": epoch_records([1, 1, 1, 2, 2, 2], with_gradients=False),
    }


def test_drift_figure_draws_every_blocks_series_in_every_run():
    figure = block_drift_figure(drift_runs(), title="drift")
    # Row 0: drift per run; row 1: gradient norms (only rollback has them).
    drift_panels, gradient_panels = figure.axes[:2], figure.axes[2:]
    assert len(figure.axes) == 4
    assert [a.get_title() for a in drift_panels] == ["rollback", "base_cy"]
    assert [a.get_ylabel() for a in figure.axes] == ["||w - w0|| / ||w0||", "", "gradient norm", ""]
    assert all(a.get_xlabel() == "epoch" and a.get_yscale() == "log" for a in figure.axes)
    assert figure.get_suptitle() == "drift"
    for axes in drift_panels:
        lines = data_lines(axes)
        assert [line.get_label() for line in lines] == list(PICTURE_BLOCKS)
        for index, line in enumerate(lines):
            np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 7))
            np.testing.assert_allclose(line.get_ydata(), drift_series(index, 6))
            assert line.get_color() == f"C{index}"  # A block's colour, the same in every panel.
    gradient_lines = data_lines(gradient_panels[0])
    assert [line.get_label() for line in gradient_lines] == [*PICTURE_BLOCKS, "head"]
    np.testing.assert_array_equal(gradient_lines[-1].get_ydata(), np.full(6, 9.0))
    assert data_lines(gradient_panels[1]) == []
    # Dashed lines between the last epoch of a period and the first of the next.
    assert vertical_lines_at(drift_panels[0]) == [2.5, 4.5]
    assert vertical_lines_at(drift_panels[1]) == [3.5]
    # One legend per row, right of the last panel: it covers no epoch.
    figure.canvas.draw()
    for axes, groups in (
        (drift_panels[1], [*PICTURE_BLOCKS]),
        (gradient_panels[1], [*PICTURE_BLOCKS, "head"]),  # base_cy's is empty: rollback's.
    ):
        legend = axes.get_legend()
        assert [text.get_text() for text in legend.get_texts()] == groups
        assert legend.get_window_extent().x0 >= axes.get_window_extent().x1
    assert drift_panels[0].get_legend() is None


def test_drift_png_shows_each_line_in_its_colour_and_leaves_pyplot_alone(tmp_path):
    runs = drift_runs()
    with global_state_kept():
        path = plot_block_drift(runs, tmp_path / "pictures" / "drift.png")
    figure = block_drift_figure(runs)
    for axes in figure.axes[:2]:
        for index in range(len(PICTURE_BLOCKS)):
            assert_colour_at_points(
                path, figure, axes, np.arange(1, 7), drift_series(index, 6), f"C{index}"
            )


@pytest.mark.parametrize(
    "runs, match",
    [
        ({}, "at least one run"),
        ({"a": []}, "at least one run"),
        ({"a": [{"epoch": 0, "loss": 1.0}]}, "no `drift_<block>`"),
    ],
)
def test_drift_figure_rejects_runs_without_drift_records(runs, match):
    with pytest.raises(ValueError, match=match):
        block_drift_figure(runs)
