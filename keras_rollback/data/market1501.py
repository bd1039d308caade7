"""Reader for Market-1501 (Zheng et al., ICCV 2015) in its published folder layout."""

from keras_rollback.data import reid_dataset

MARKET1501_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d)s\d+_\d+_\d+"
MARKET1501_PUBLISHED = reid_dataset.published_statistics(
    [(12_936, 751, 6), (3_368, 750, 6), (15_913, 751, 6)]
)


def read_market1501(root, *, extensions=reid_dataset.IMAGE_EXTENSIONS):
    """Reads Market-1501 from its published folder layout.

    Market-1501 keeps one folder per split: `bounding_box_train` (training identities),
    `query` and `bounding_box_test` (the gallery), with images named
    `PPPP_cCsS_FFFFFF_BB.jpg` (person id, camera, sequence, frame, box), e.g.
    `0002_c1s1_000451_03.jpg`. As in the official evaluation code, person id -1 marks junk
    images, dropped here (the protocol ignores them); id 0 marks distractors, kept in the
    gallery. The `Thumbs.db` files of the archive are ignored.

    The full dataset gives 12,936 / 3,368 / 15,913 train / query / gallery images with
    751 training identities; the logged summary shows these numbers beside the counted ones.

    Example:

    >>> dataset = read_market1501("/data/Market-1501-v15.09.15")  # doctest: +SKIP
    >>> dataset.num_train_pids, len(dataset.query)  # doctest: +SKIP
    (751, 3368)

    Args:
        root: path-like. The folder holding `bounding_box_train`, `query` and
            `bounding_box_test`.
        extensions: tuple of str. Image file extensions read. Defaults to
            `(".jpg", ".jpeg", ".png")`.

    Returns:
        A `ReIDDataset`, training pids relabelled `0..750`, camera ids 0-based.

    Raises:
        DatasetLayoutError: if a folder is missing or a split is empty.
        ValueError: if a file name does not follow the Market-1501 naming.
    """
    return reid_dataset.read_reid_folders(
        root,
        pattern=MARKET1501_PATTERN,
        extensions=extensions,
        name="Market-1501",
        published=MARKET1501_PUBLISHED,
    )
