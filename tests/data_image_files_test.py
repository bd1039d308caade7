"""Tests for keras_rollback.data.image_files: unreadable files are found and named."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from keras_rollback.data import image_files
from keras_rollback.data import reid_dataset


@pytest.fixture
def image_folder(tmp_path):
    """Good and bad files; the bad ones each break in a different way."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 8, 3), dtype=np.uint8)
    jpeg = tf.io.encode_jpeg(pixels).numpy()
    png = tf.io.encode_png(pixels).numpy()
    files = {
        "good.jpg": jpeg,
        "good.png": png,
        "padded.jpg": jpeg + b"\x00" * 16,  # Padding after the end marker is legal.
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[:-12],
        "text.jpg": b"this is not an image",
        # Intact markers, broken entropy data: only a full decode finds it.
        "corrupt.jpg": jpeg[:4] + b"\x00" * (len(jpeg) - 6) + jpeg[-2:],
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


def test_header_check_finds_empty_truncated_and_non_images(image_folder):
    names = [
        "good.jpg",
        "good.png",
        "padded.jpg",
        "empty.jpg",
        "truncated.jpg",
        "truncated.png",
        "text.jpg",
        "missing.jpg",
    ]
    bad = image_files.find_bad_images([image_folder / name for name in names])
    assert [(item.path.rsplit("/", 1)[1], item.reason) for item in bad] == [
        ("empty.jpg", "empty file (0 bytes)"),
        ("truncated.jpg", "truncated JPEG (no end-of-image marker)"),
        ("truncated.png", "truncated PNG (no IEND chunk)"),
        ("text.jpg", "not a JPEG or PNG file"),
        ("missing.jpg", "cannot be read (No such file or directory)"),
    ]


def test_decode_check_also_finds_corrupt_data(image_folder):
    paths = [image_folder / name for name in ("good.jpg", "corrupt.jpg", "empty.jpg", "good.png")]
    assert image_files.find_bad_images(paths) == [
        image_files.BadImage(str(paths[2]), "empty file (0 bytes)")
    ]
    bad = image_files.find_bad_images(paths, check="decode")
    assert [item.path for item in bad] == [str(paths[1]), str(paths[2])]
    assert bad[0].reason == "cannot be decoded (corrupt image data)"
    assert image_files.find_bad_images(paths, check="none") == []


def test_drop_bad_images_raises_listing_paths(image_folder):
    records = [
        reid_dataset.ReIDRecord(str(image_folder / name), 0, 0)
        for name in ("good.jpg", "truncated.jpg")
    ]
    with pytest.raises(
        image_files.BadImageError,
        match=r"1 of 2 image file\(s\)(.|\n)*truncated\.jpg: truncated JPEG",
    ):
        image_files.drop_bad_images(records)


def test_drop_bad_images_skips_and_counts(image_folder, caplog):
    records = [
        reid_dataset.ReIDRecord(str(image_folder / name), pid, 0)
        for pid, name in enumerate(("good.jpg", "empty.jpg", "good.png", "text.jpg"))
    ]
    with caplog.at_level(logging.WARNING, logger="absl"):
        kept = image_files.drop_bad_images(records, on_bad_image="skip")
    assert [record.pid for record in kept] == [0, 2]
    assert (
        "Skipping 2 of 4" in caplog.text
        and "empty.jpg" in caplog.text
        and "text.jpg" in caplog.text
    )


def test_invalid_options_are_echoed(image_folder):
    with pytest.raises(ValueError, match="Received: check='full'"):
        image_files.find_bad_images([image_folder / "good.jpg"], check="full")
    with pytest.raises(ValueError, match="Received: on_bad_image='ignore'"):
        image_files.drop_bad_images([], on_bad_image="ignore")


def test_decode_image_equals_pil_on_every_real_market1501_jpeg(mini_market1501):
    pil = pytest.importorskip("PIL.Image")
    paths = sorted(mini_market1501.rglob("*.jpg"))
    assert len(paths) == 96
    largest_default_difference = 0
    for path in paths:
        contents = tf.io.read_file(str(path))
        ours = image_files.decode_image(contents).numpy()
        with pil.open(path) as image:
            expected = np.asarray(image.convert("RGB"))
        np.testing.assert_array_equal(ours, expected, err_msg=str(path))
        tensorflow_default = tf.io.decode_jpeg(contents, channels=3).numpy()
        largest_default_difference = max(
            largest_default_difference,
            int(np.abs(tensorflow_default.astype(int) - expected.astype(int)).max()),
        )
    # TensorFlow's default IDCT is not PIL's: the test would notice a return to it.
    assert largest_default_difference > 0


def test_decode_image_reads_png_grey_and_rgba_as_rgb(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(1).integers(0, 256, size=(12, 7, 4), dtype=np.uint8)
    for mode, array in (("RGBA", pixels), ("L", pixels[..., 0]), ("RGB", pixels[..., :3])):
        path = tmp_path / f"{mode}.png"
        pil.fromarray(array, mode).save(path)
        ours = image_files.decode_image(tf.io.read_file(str(path))).numpy()
        with pil.open(path) as image:
            np.testing.assert_array_equal(ours, np.asarray(image.convert("RGB")), err_msg=mode)
