"""Tests for keras_rollback.evaluation.visualization: what the pictures draw, and their PNGs."""

import numpy as np
import pytest
from matplotlib import colors
from picture_checks import assert_colour_at_points
from picture_checks import data_lines
from picture_checks import global_state_kept
from PIL import Image

from keras_rollback.evaluation import plot_cmc_curve
from keras_rollback.evaluation import plot_ranked_list
from keras_rollback.evaluation.visualization import MATCH_COLOR
from keras_rollback.evaluation.visualization import MISMATCH_COLOR
from keras_rollback.evaluation.visualization import cmc_curve_figure
from keras_rollback.evaluation.visualization import ranked_list_figure


def write_images(folder, count, prefix):
    paths = []
    for i in range(count):
        path = folder / f"{prefix}{i}.png"
        Image.new("RGB", (16, 32), (40 * i % 255, 80, 160)).save(path)
        paths.append(str(path))
    return paths


def frame_colors(path):
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    green = ((pixels[:, 1] > 130) & (pixels[:, 0] < 60) & (pixels[:, 2] < 60)).sum()
    red = ((pixels[:, 0] > 180) & (pixels[:, 1] < 60) & (pixels[:, 2] < 60)).sum()
    return green, red


def test_ranked_list_frames_matches_green_and_mismatches_red(tmp_path):
    query_paths = write_images(tmp_path, 1, "q")
    gallery_paths = write_images(tmp_path, 4, "g")
    distances = np.array([[0.1, 0.2, 0.3, 0.4]], dtype="float32")
    # Gallery 0 is junk (same id, same camera) and must not be shown; 1 matches, 2-3 do not.
    args = (distances, query_paths, gallery_paths, [7], [7, 7, 8, 9], [1], [1, 2, 1, 1])
    only_match = plot_ranked_list(*args, tmp_path / "a.png", top_k=1)
    green, red = frame_colors(only_match)
    assert green > 50 and red == 0
    all_three = plot_ranked_list(*args, tmp_path / "out" / "b.png", top_k=3)
    green, red = frame_colors(all_three)
    assert green > 50 and red > 100


def test_ranked_list_figure_shows_the_scored_list_with_ranks_ids_and_frames(tmp_path):
    query_paths = write_images(tmp_path, 2, "q")
    gallery_paths = write_images(tmp_path, 4, "g")
    distances = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], dtype="float32")
    figure = ranked_list_figure(
        distances, query_paths, gallery_paths, [7, 9], [7, 7, 8, 9], [1, 2], [1, 2, 1, 1], top_k=4
    )
    grid = np.array(figure.axes).reshape(2, 5)
    # Query 7 (camera 1): gallery 0 is junk (same id and camera); 1 matches; 2 and 3 do not.
    assert [a.get_title() for a in grid[0]] == [
        "query\nid 7",
        "1: id 7\n0.200",
        "2: id 8\n0.300",
        "3: id 9\n0.400",
        "",
    ]
    assert not grid[0, 4].axison  # Three images in the list: the fourth place is empty.
    # Query 9 (camera 2) sees every gallery image, nearest first.
    assert [a.get_title().split("\n")[0] for a in grid[1]] == [
        "query",
        "1: id 9",
        "2: id 8",
        "3: id 7",
        "4: id 7",
    ]
    frames = [colors.to_hex(a.spines["top"].get_edgecolor()) for a in grid[1]]
    assert frames == ["#000000", MATCH_COLOR, MISMATCH_COLOR, MISMATCH_COLOR, MISMATCH_COLOR]
    np.testing.assert_array_equal(
        grid[1, 1].get_images()[0].get_array(), np.asarray(Image.open(gallery_paths[3]))
    )


def test_cmc_curve_figure_draws_each_curve_with_its_label():
    curves = {"period 1": [0.5, 0.8, 0.9], "period 4": [0.6, 0.9, 1.0]}
    figure = cmc_curve_figure(curves, title="CMC (resnet50)")
    (axes,) = figure.axes
    lines = data_lines(axes)
    assert [line.get_label() for line in lines] == list(curves)
    for line, values in zip(lines, curves.values(), strict=True):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(line.get_ydata(), 100 * np.array(values))
    assert [t.get_text() for t in axes.get_legend().get_texts()] == list(curves)
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == (
        "rank",
        "matching rate (%)",
        "CMC (resnet50)",
    )
    assert cmc_curve_figure([0.5, 1.0]).axes[0].get_legend() is None  # One curve: no legend.


def test_cmc_curve_png_shows_the_curve_in_its_colour(tmp_path):
    cmc = [0.3, 0.55, 0.7, 0.8, 0.85, 0.9]
    path = plot_cmc_curve(cmc, tmp_path / "out" / "cmc.png")
    assert path == str(tmp_path / "out" / "cmc.png")
    figure = cmc_curve_figure(cmc)
    assert_colour_at_points(
        path, figure, figure.axes[0], np.arange(1, 7), 100 * np.array(cmc), "C0"
    )


def test_pictures_leave_matplotlib_global_state_alone(tmp_path):
    query_paths = write_images(tmp_path, 1, "q")
    gallery_paths = write_images(tmp_path, 2, "g")
    with global_state_kept():
        plot_cmc_curve([0.5, 1.0], tmp_path / "cmc.png")
        plot_ranked_list(
            np.array([[0.1, 0.2]], "float32"),
            query_paths,
            gallery_paths,
            [1],
            [1, 2],
            [0],
            [1, 1],
            tmp_path / "ranked.png",
        )


@pytest.mark.parametrize(
    "cmc, message",
    [([], "non-empty 1-D"), ([0.5, 1.5], r"in \[0, 1\]"), ({}, "empty dict"), ([np.nan], "finite")],
)
def test_cmc_curve_rejects_bad_values(tmp_path, cmc, message):
    with pytest.raises(ValueError, match=message):
        plot_cmc_curve(cmc, tmp_path / "x.png")


def test_ranked_list_rejects_bad_arguments(tmp_path):
    args = (np.zeros((1, 2), "float32"), ["q.png"], ["a.png", "b.png"], [1], [1, 2], [0], [1, 1])
    with pytest.raises(ValueError, match="gallery_paths` has 1 entries"):
        plot_ranked_list(args[0], args[1], ["a.png"], *args[3:], tmp_path / "x.png")
    with pytest.raises(ValueError, match="top_k=0"):
        plot_ranked_list(*args, tmp_path / "x.png", top_k=0)
    with pytest.raises(ValueError, match="query_indices"):
        plot_ranked_list(*args, tmp_path / "x.png", query_indices=[3])
