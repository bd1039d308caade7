"""Checks of what a picture draws: its data lines, the colours of its PNG, global state."""

import contextlib

import matplotlib
import numpy as np
from matplotlib import colors
from matplotlib import pyplot
from PIL import Image


def data_lines(axes):
    """The lines of `axes` that carry data: those with a legend label (not "_...")."""
    return [line for line in axes.get_lines() if not line.get_label().startswith("_")]


def vertical_lines_at(axes):
    """x of the vertical lines of `axes` (`axvline`s, such as period starts)."""
    return [
        line.get_xdata()[0]
        for line in axes.get_lines()
        if line.get_label().startswith("_") and len(set(line.get_xdata())) == 1
    ]


def assert_colour_at_points(png_path, figure, axes, x, y, colour):
    """Asserts that the PNG of `figure` shows `colour` at each data point `(x, y)` of `axes`.

    `figure` is built by the same call as the picture in `png_path`; it is drawn again at the
    PNG's dpi so that the axes' data transform gives the PNG's pixels. A pixel within 2 px of
    the point, within 12 of the colour in each channel, counts.
    """
    with Image.open(png_path) as image:
        dpi = round(image.info["dpi"][0])
        pixels = np.asarray(image.convert("RGB")).astype(int)
    figure.set_dpi(dpi)
    figure.canvas.draw()
    assert figure.canvas.get_width_height() == (pixels.shape[1], pixels.shape[0])
    want = np.array(colors.to_rgb(colour)) * 255
    for px, py in axes.transData.transform(np.column_stack([x, y])):
        column, row = round(px), round(pixels.shape[0] - py)
        patch = pixels[row - 2 : row + 3, column - 2 : column + 3].reshape(-1, 3)
        assert np.any(np.all(np.abs(patch - want) <= 12, axis=1)), (
            f"no {colour} pixel near data point ({px:.0f}, {py:.0f}) of {png_path}"
        )


@contextlib.contextmanager
def global_state_kept():
    """Asserts that the block leaves matplotlib's backend and pyplot's open figures as found.

    It runs on a backend other than Agg with one pyplot figure open, as a notebook would:
    `matplotlib.use("Agg")` inside the block would switch the backend (and close the figure).
    """
    original = matplotlib.get_backend()
    matplotlib.use("svg")
    users_figure = pyplot.figure()
    try:
        figures = pyplot.get_fignums()
        yield
        assert matplotlib.get_backend() == "svg"
        assert pyplot.get_fignums() == figures
    finally:
        pyplot.close(users_figure)
        matplotlib.use(original)
