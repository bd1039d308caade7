"""Pictures of an evaluation: ranked lists, CMC curves and activation maps, as PNG files.

Figures are drawn with matplotlib's object API on an Agg canvas, so nothing depends on (or
changes) the global pyplot backend and no display is needed. `cmc_curve_figure`,
`ranked_list_figure` and `activation_map_figure` return the `matplotlib.figure.Figure` (to
show in a notebook, or to inspect); `plot_cmc_curve`, `plot_ranked_list` and
`plot_activation_maps` write it to a PNG file.
"""

import numpy as np
from PIL import Image

from keras_rollback import _figures
from keras_rollback.metrics import _validation

MATCH_COLOR = "#1a9e1a"
MISMATCH_COLOR = "#d62020"


def plot_cmc_curve(cmc, path, *, title="CMC"):
    """Write a CMC curve (matching rate against rank) as a PNG file.

    Parameters
    ----------
    cmc : array-like of shape (max_rank,) or dict of str -> array-like
        One CMC curve with values in [0, 1], or several curves keyed by their legend label.
    path : str or path-like
        Output PNG file; parent folders are created.
    title : str, default="CMC"

    Returns
    -------
    path : str

    See Also
    --------
    cmc_curve_figure : The picture as a `matplotlib.figure.Figure`.
    """
    return _figures.save_png(cmc_curve_figure(cmc, title=title), path)


def cmc_curve_figure(cmc, *, title="CMC"):
    """Draw a CMC curve (matching rate against rank) on a new figure.

    Parameters
    ----------
    cmc : array-like of shape (max_rank,) or dict of str -> array-like
        One CMC curve with values in [0, 1], or several curves keyed by their legend label.
    title : str, default="CMC"

    Returns
    -------
    figure : matplotlib.figure.Figure
        One axes, one line per curve (x: ranks 1..max_rank, y: matching rate in %), drawn
        by an Agg canvas; pyplot does not know it.
    """
    curves = cmc if isinstance(cmc, dict) else {None: cmc}
    if not curves:
        raise ValueError("`cmc` is an empty dict; there is no curve to plot.")
    figure = _figures.agg_figure(figsize=(5, 4), dpi=100)
    axes = figure.add_subplot()
    for label, values in curves.items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"Each CMC curve must be a non-empty 1-D array. Received shape {values.shape} "
                f"for {label!r}."
            )
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ValueError(f"CMC values must be finite and in [0, 1] (curve {label!r}).")
        ranks = np.arange(1, values.size + 1)
        axes.plot(ranks, 100 * values, marker="." if values.size <= 50 else None, label=label)
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if any(label is not None for label in curves):
        axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def plot_ranked_list(
    distances,
    query_paths,
    gallery_paths,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    path,
    *,
    query_indices=None,
    top_k=10,
    query_gallery_indices=None,
):
    """Write a picture of ranked lists: each query followed by its top-k gallery images.

    Parameters
    ----------
    distances : array-like of shape (n_queries, n_gallery)
        Smaller is more similar.
    query_paths, gallery_paths : sequence of str, shapes (n_queries,) and (n_gallery,)
        Image files.
    query_pids, gallery_pids, query_camids, gallery_camids : array-like of int
        Identities and cameras, as for `keras_rollback.metrics.ranking_scores` (camera ids
        may be None for both).
    path : str or path-like
        Output PNG file; parent folders are created.
    query_indices : sequence of int or None, default=None
        The queries to show (one row each); ``None`` shows the first five.
    top_k : int, default=10
        Gallery images per row.
    query_gallery_indices : array-like of int of shape (n_queries,) or None, default=None
        Gallery index of each query image when the queries are in the gallery (left out of
        their own list), as for `ranking_scores`.

    Returns
    -------
    path : str

    Notes
    -----
    The list is the one the metrics score (Market-1501 protocol): junk (identity -1, and the
    query's identity seen by the query's camera) is left out; ties keep gallery order.
    Correct matches are framed green, wrong ones red; the query has a black frame.

    See Also
    --------
    ranked_list_figure : The picture as a `matplotlib.figure.Figure`.
    """
    figure = ranked_list_figure(
        distances,
        query_paths,
        gallery_paths,
        query_pids,
        gallery_pids,
        query_camids,
        gallery_camids,
        query_indices=query_indices,
        top_k=top_k,
        query_gallery_indices=query_gallery_indices,
    )
    return _figures.save_png(figure, path)


def ranked_list_figure(
    distances,
    query_paths,
    gallery_paths,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    *,
    query_indices=None,
    top_k=10,
    query_gallery_indices=None,
):
    """Draw ranked lists on a new figure: each query followed by its top-k gallery images.

    The parameters and the list drawn are those of `plot_ranked_list` (without `path`).

    Returns
    -------
    figure : matplotlib.figure.Figure
        A grid of axes, one row per query and ``top_k + 1`` columns (the query, then its
        ranked gallery images; axes past the end of a short list are turned off), each
        titled with its rank, identity and distance. Drawn by an Agg canvas; pyplot does
        not know it.
    """
    distances = np.asarray(distances)
    if distances.ndim != 2 or not np.issubdtype(distances.dtype, np.floating):
        raise ValueError(
            f"`distances` must be a 2-D floating array. Received shape {distances.shape}, "
            f"dtype {distances.dtype}."
        )
    num_queries, num_gallery = distances.shape
    query_pids = _validation.check_ids(query_pids, "query_pids")
    gallery_pids = _validation.check_ids(gallery_pids, "gallery_pids")
    if (query_camids is None) != (gallery_camids is None):
        raise ValueError(
            "Camera ids must be given for both the query and the gallery, or None for both."
        )
    has_cameras = query_camids is not None
    if has_cameras:
        query_camids = _validation.check_ids(query_camids, "query_camids")
        gallery_camids = _validation.check_ids(gallery_camids, "gallery_camids")
    else:
        query_camids = np.zeros(num_queries, np.int64)  # One camera: no camera junk.
        gallery_camids = np.ones(num_gallery, np.int64)
    self_index = np.full(num_queries, -1, np.int64)
    if query_gallery_indices is not None:
        self_index = _validation.check_ids(query_gallery_indices, "query_gallery_indices")
    for values, name in (
        (query_paths, "query_paths"),
        (query_pids, "query_pids"),
        (query_camids, "query_camids"),
        (self_index, "query_gallery_indices"),
    ):
        _validation.check_same_length(num_queries, values, name, "queries")
    for values, name in (
        (gallery_paths, "gallery_paths"),
        (gallery_pids, "gallery_pids"),
        (gallery_camids, "gallery_camids"),
    ):
        _validation.check_same_length(num_gallery, values, name, "gallery items")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"Received: top_k={top_k!r}. Expected a positive integer.")
    if query_indices is None:
        query_indices = range(min(5, num_queries))
    query_indices = [int(q) for q in query_indices]
    if not query_indices or any(not 0 <= q < num_queries for q in query_indices):
        raise ValueError(
            f"Received: query_indices={query_indices}. Expected indices in [0, {num_queries})."
        )

    figure = _figures.agg_figure(figsize=(1.1 * (top_k + 1), 2.4 * len(query_indices)), dpi=100)
    grid = figure.subplots(len(query_indices), top_k + 1, squeeze=False)
    for row, q in enumerate(query_indices):
        junk = (gallery_pids == -1) | (
            (gallery_pids == query_pids[q]) & (gallery_camids == query_camids[q])
        )
        if self_index[q] >= 0:
            junk[self_index[q]] = True
        order = np.argsort(distances[q], kind="stable")
        ranked = order[~junk[order]][:top_k]
        _show(grid[row, 0], query_paths[q], "black", f"query\nid {query_pids[q]}")
        for column in range(1, top_k + 1):
            axes = grid[row, column]
            if column > len(ranked):
                axes.axis("off")
                continue
            g = ranked[column - 1]
            match = gallery_pids[g] == query_pids[q]
            _show(
                axes,
                gallery_paths[g],
                MATCH_COLOR if match else MISMATCH_COLOR,
                f"{column}: id {gallery_pids[g]}\n{distances[q, g]:.3f}",
            )
    figure.tight_layout()
    return figure


def _show(axes, image_path, color, label):
    with Image.open(image_path) as image:
        axes.imshow(np.asarray(image.convert("RGB")))
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(4)
    axes.set_title(label, fontsize=7)


def plot_activation_maps(images, maps, path, *, shares=None, row_labels=None, alpha=0.5):
    """Write activation maps of several models side by side on the same images as a PNG file.

    The parameters are those of `activation_map_figure`; `path` is the output PNG file
    (parent folders are created).

    Returns
    -------
    path : str

    See Also
    --------
    activation_map_figure : The picture as a `matplotlib.figure.Figure`.
    """
    figure = activation_map_figure(images, maps, shares=shares, row_labels=row_labels, alpha=alpha)
    return _figures.save_png(figure, path)


def activation_map_figure(images, maps, *, shares=None, row_labels=None, alpha=0.5):
    """Draw activation maps of several models over the same images (the paper's Figure 6).

    Parameters
    ----------
    images : array-like of shape (n_images, height, width, 3)
        The images as shown, RGB in [0, 255] (e.g. resized as the model saw them, before
        normalisation).
    maps : dict of str -> array-like of shape (n_images, height, width)
        One map per image for each model, keyed by the model's name (a column title), in
        column order; e.g. from `keras_rollback.evaluation.activation_maps.activation_maps`.
    shares : dict of str -> array-like of shape (n_images,) or None, default=None
        Foreground share of each map (`foreground_share`), written under it; NaN or a
        missing key writes nothing.
    row_labels : sequence of str or None, default=None
        A label per image (a file name), written above it.
    alpha : float, default=0.5
        Opacity of the map over the image.

    Returns
    -------
    figure : matplotlib.figure.Figure
        One row per image; columns: the image, then one overlay per model (the image in
        grey, the map in colour on top: two images per axes, the map second). Each map is
        divided by its own maximum (colour scale 0 to 1 of that maximum: where a model
        responds, not how strongly compared with the other; a nearly uniform map stays
        nearly one colour). Drawn by an Agg canvas; pyplot does not know it.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise ValueError(
            "`images` must have shape (n_images, height, width, 3) with n_images > 0. "
            f"Received shape {images.shape}."
        )
    if not isinstance(maps, dict) or not maps:
        raise ValueError("`maps` must be a non-empty dict from model name to maps.")
    maps = {name: np.asarray(value, dtype=np.float64) for name, value in maps.items()}
    for name, value in maps.items():
        if value.shape != images.shape[:3]:
            raise ValueError(
                f"The maps of {name!r} have shape {value.shape}; expected {images.shape[:3]} "
                "(one map per image, of the image's size)."
            )
    shares = {} if shares is None else shares
    shares = {name: np.asarray(value, dtype=np.float64) for name, value in shares.items()}
    for name, value in shares.items():
        if value.shape != (len(images),):
            raise ValueError(
                f"`shares[{name!r}]` has shape {value.shape}; expected ({len(images)},): one "
                "share per image."
            )
    if row_labels is not None and len(row_labels) != len(images):
        raise ValueError(
            f"`row_labels` has {len(row_labels)} entries; expected one per image ({len(images)})."
        )
    if not 0 <= alpha <= 1:
        raise ValueError(f"Received: alpha={alpha!r}. Expected a float in [0, 1].")

    height, width = images.shape[1:3]
    columns = 1 + len(maps)
    panel = 1.3 * height / max(width, 1)
    figure = _figures.agg_figure(
        figsize=(1.5 * columns + 0.3, (panel + 0.55) * len(images) + 0.3), dpi=100
    )
    grid = figure.subplots(len(images), columns, squeeze=False)
    pixels = np.clip(images, 0, 255) / 255.0
    grey = pixels.mean(axis=-1)
    for row in range(len(images)):
        axes = grid[row, 0]
        axes.imshow(pixels[row])
        title = "image" if row_labels is None else str(row_labels[row])
        axes.set_title(title, fontsize=6)
        for column, (name, value) in enumerate(maps.items(), start=1):
            axes = grid[row, column]
            axes.imshow(grey[row], cmap="gray", vmin=0, vmax=1)
            high = value[row].max()
            scaled = value[row] / high if high > 0 else value[row]
            axes.imshow(scaled, cmap="jet", vmin=0, vmax=1, alpha=alpha)
            title = name
            if name in shares and np.isfinite(shares[name][row]):
                title += f"\non person {100 * shares[name][row]:.0f}%"
            axes.set_title(title, fontsize=7)
        for axes in grid[row]:
            axes.set_xticks([])
            axes.set_yticks([])
    figure.tight_layout()
    return figure
