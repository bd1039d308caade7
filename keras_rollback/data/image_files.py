"""Finds unreadable image files before they reach a training or evaluation loop.

A zero-byte, truncated, corrupt or non-image file would otherwise fail inside a `tf.data`
map function, deep in `model.fit`, with an error that does not name the file. The input
pipelines of this package check their files when the dataset is built and either raise an
error listing the bad files or drop them and log how many were dropped, with their paths.
"""

import os
from typing import NamedTuple

import tensorflow as tf
from absl import logging

from keras_rollback.user_error import UserError

IMAGE_CHECKS = ("header", "decode", "none")
ON_BAD_IMAGE = ("raise", "skip")
JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
# Some encoders write padding after the JPEG end-of-image marker: look for it in the tail.
JPEG_TAIL_BYTES = 1024


class BadImage(NamedTuple):
    """An image file that cannot be read, and why."""

    path: str
    reason: str


class BadImageError(UserError, ValueError):
    """One or more image files are missing, empty, truncated, corrupt or not images."""


def check_header(path):
    """Returns why the file at `path` is not a complete JPEG or PNG, or `None` if it is."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as image_file:
            head = image_file.read(len(PNG_MAGIC))
            image_file.seek(max(0, size - JPEG_TAIL_BYTES))
            tail = image_file.read()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if size == 0:
        return "empty file (0 bytes)"
    if head.startswith(JPEG_MAGIC):
        return None if JPEG_END in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(PNG_MAGIC):
        return None if tail.endswith(PNG_END) else "truncated PNG (no IEND chunk)"
    return "not a JPEG or PNG file"


def find_bad_images(paths, *, check="header"):
    """Lists the files among `paths` that are not readable JPEG or PNG images.

    Example:

    >>> bad = find_bad_images(["a.jpg", "b.png"], check="decode")  # doctest: +SKIP
    >>> [f"{b.path}: {b.reason}" for b in bad]  # doctest: +SKIP

    Args:
        paths: sequence of str. Image file paths.
        check: str. `"header"` reads the first and last bytes of each file: it finds
            missing, empty, non-image and truncated files and costs two small reads per
            file. `"decode"` also decodes every file with TensorFlow (in parallel) to find
            files corrupt inside; it costs a full decode per file. `"none"` checks nothing.
            Defaults to `"header"`.

    Returns:
        A list of `BadImage(path, reason)` in the order of `paths`.
    """
    if check not in IMAGE_CHECKS:
        raise ValueError(
            f"Unknown image check. Received: check={check!r}. Expected one of {IMAGE_CHECKS}."
        )
    paths = [str(path) for path in paths]
    if check == "none":
        return []
    bad = {}
    for index, path in enumerate(paths):
        reason = check_header(path)
        if reason is not None:
            bad[index] = BadImage(path, reason)
    if check == "decode":
        candidates = [index for index in range(len(paths)) if index not in bad]
        decodable = set(decodable_indices([paths[index] for index in candidates]))
        for position, index in enumerate(candidates):
            if position not in decodable:
                bad[index] = BadImage(paths[index], "cannot be decoded (corrupt image data)")
    return [bad[index] for index in sorted(bad)]


def decode_image(contents):
    """Decodes the bytes of a JPEG or PNG file to a uint8 `[h, w, 3]` tensor, as PIL does.

    JPEGs are decoded with libjpeg's accurate integer IDCT (`dct_method="INTEGER_ACCURATE"`),
    the one PIL uses, and so the authors' torchvision pipeline and most serving code:
    TensorFlow's default, a faster IDCT, differs from it by up to 4 grey levels on real
    Market-1501 JPEGs. Grey and RGBA images become RGB, like PIL's `convert("RGB")`.
    """
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )


def decodable_indices(paths):
    """Returns the positions in `paths` of the files TensorFlow decodes without error."""
    if not paths:
        return []

    def decode(index, path):
        image = decode_image(tf.io.read_file(path))
        return index, tf.size(image)

    indexed = tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), tf.constant(paths)))
    decoded = indexed.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    # ignore_errors drops the failing elements; the surviving indices name the good files.
    return [int(index) for index, _ in decoded.ignore_errors().as_numpy_iterator()]


def drop_bad_images(records, *, check="header", on_bad_image="raise"):
    """Checks the image file of every record and raises or drops the unreadable ones.

    Args:
        records: sequence of tuples whose first field is the image path (e.g. `ReIDRecord`).
        check: str. How to check each file, see `find_bad_images`. Defaults to `"header"`.
        on_bad_image: str. `"raise"` raises `BadImageError` listing the bad files; `"skip"`
            drops their records and logs a warning with their count and paths. Defaults to
            `"raise"`.

    Returns:
        The list of records whose files passed the check.

    Raises:
        BadImageError: if a file fails the check and `on_bad_image="raise"`.
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(
            f"Unknown on_bad_image. Received: on_bad_image={on_bad_image!r}. Expected one of {ON_BAD_IMAGE}."
        )
    records = list(records)
    bad = find_bad_images([record[0] for record in records], check=check)
    if not bad:
        return records
    listing = "\n".join(f"  {item.path}: {item.reason}" for item in bad)
    if on_bad_image == "raise":
        raise BadImageError(
            f"{len(bad)} of {len(records)} image file(s) cannot be read:\n{listing}\n"
            "Fix or remove them, or pass on_bad_image='skip' to drop them."
        )
    logging.warning(
        "Skipping %d of %d unreadable image file(s):\n%s", len(bad), len(records), listing
    )
    bad_paths = {item.path for item in bad}
    return [record for record in records if str(record[0]) not in bad_paths]
