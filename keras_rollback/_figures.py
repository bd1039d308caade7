"""Pictures drawn off-screen: a matplotlib `Figure` on its own Agg canvas, saved as PNG.

Library pictures never touch matplotlib's global state: no `matplotlib.use` (which would
switch a notebook user's plotting backend) and no pyplot (whose figure manager keeps every
figure it made open until closed). A figure made here belongs to its caller alone, and goes
away with the last reference to it.
"""

import os


def agg_figure(**figure_kwargs):
    """A new `matplotlib.figure.Figure(**figure_kwargs)` drawn by an Agg canvas."""
    # Imported here: matplotlib takes most of a second to import, and only pictures need it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**figure_kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path, *, dpi=100):
    """Writes `figure` to `path` as a PNG of `dpi` pixels per inch (parent folders are made).

    Returns `path` as a string.
    """
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    return os.fspath(path)


def mark_period_starts(axes, epochs, periods, **line_style):
    """Draws a dashed vertical line on `axes` between two epochs where a new period begins.

    `epochs` are ascending epoch numbers and `periods` the period of each (None where not
    known). The lines carry the label "_period start": they stay out of legends.
    """
    style = {"color": "grey", "linestyle": "--", "linewidth": 0.8, **line_style}
    for index in range(1, len(epochs)):
        if periods[index] is not None and periods[index] != periods[index - 1]:
            axes.axvline(epochs[index - 1] + 0.5, label="_period start", **style)
