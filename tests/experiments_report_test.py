"""experiments.report's pictures, by what they draw (the result files: experiments_main_test)."""

import numpy as np
from picture_checks import assert_colour_at_points
from picture_checks import data_lines
from picture_checks import global_state_kept
from picture_checks import vertical_lines_at

from experiments import report


def result_rows():
    rows = []
    for method, period_starts, offset in (("rollback", (1, 3, 5), 0.0), ("base_cy", (1, 4), 0.05)):
        for epoch in range(1, 7):
            period = sum(epoch >= start for start in period_starts)
            rows.append(
                {
                    "method": method,
                    "epoch": epoch,
                    "period": period,
                    "loss": 2.0 / epoch,
                    # Scored at each period's end.
                    "mAP": 0.1 * epoch - offset if epoch + 1 in (*period_starts, 7) else None,
                    "top1": None,
                }
            )
    return rows


def test_curves_figure_draws_loss_and_map_per_method_with_period_starts():
    figure = report.curves_figure(result_rows())
    loss_axes, map_axes = figure.axes
    loss_lines, map_lines = data_lines(loss_axes), data_lines(map_axes)
    assert [line.get_label() for line in loss_lines] == ["loss (rollback)", "loss (base_cy)"]
    assert [line.get_label() for line in map_lines] == ["mAP (rollback)", "mAP (base_cy)"]
    for line in loss_lines:
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 7))
        np.testing.assert_allclose(line.get_ydata(), 2.0 / np.arange(1, 7))
    np.testing.assert_array_equal(map_lines[0].get_xdata(), [2, 4, 6])
    np.testing.assert_allclose(map_lines[0].get_ydata(), [20, 40, 60])
    np.testing.assert_array_equal(map_lines[1].get_xdata(), [3, 6])
    np.testing.assert_allclose(map_lines[1].get_ydata(), [25, 55])
    # A method's lines share its colour; its period starts are marked in it.
    assert [line.get_color() for line in map_lines] == [line.get_color() for line in loss_lines]
    assert vertical_lines_at(loss_axes) == [2.5, 4.5, 3.5]
    legend_texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend_texts == [line.get_label() for line in loss_lines + map_lines]
    assert (loss_axes.get_yscale(), map_axes.get_ylabel()) == ("log", "mAP or top-1 accuracy (%)")


def test_curves_png_shows_the_map_points_and_leaves_pyplot_alone(tmp_path):
    with global_state_kept():
        report.plot_curves(result_rows(), str(tmp_path))
    figure = report.curves_figure(result_rows())
    assert_colour_at_points(
        tmp_path / "curves.png", figure, figure.axes[1], [2, 4, 6], [20, 40, 60], "C0"
    )
