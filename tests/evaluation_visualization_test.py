"""Tests for keras_rollback.evaluation.visualization (PNG pictures)."""

import numpy as np
import pytest
from PIL import Image

from keras_rollback.evaluation import plot_cmc_curve
from keras_rollback.evaluation import plot_ranked_list


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


def test_cmc_curve_png_single_and_several_curves(tmp_path):
    one = plot_cmc_curve([0.5, 0.7, 0.9, 1.0], tmp_path / "one.png")
    two = plot_cmc_curve({"period 1": [0.5, 0.8], "period 4": [0.6, 0.9]}, tmp_path / "two.png")
    for path in (one, two):
        assert Image.open(path).format == "PNG"


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
