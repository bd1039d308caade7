"""Reader for DukeMTMC-reID (Zheng et al., ICCV 2017) in its published folder layout."""

from keras_rollback.data import reid_dataset

DUKEMTMC_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d)_f\d+"
DUKEMTMC_PUBLISHED = reid_dataset.published_statistics(
    [(16_522, 702, 8), (2_228, 702, 8), (17_661, 1_110, 8)]
)


def read_dukemtmc_reid(root, *, extensions=reid_dataset.IMAGE_EXTENSIONS):
    """Reads DukeMTMC-reID from its published folder layout.

    DukeMTMC-reID uses the Market-1501 folders (`bounding_box_train`, `query`,
    `bounding_box_test`) with images named `PPPP_cC_fFFFFFFF.jpg`, e.g.
    `0001_c2_f0046182.jpg`. The gallery holds 408 distractor identities that appear in one
    camera only; they are ordinary gallery ids. The full dataset gives 16,522 / 2,228 /
    17,661 train / query / gallery images with 702 training identities.

    Example:

    >>> dataset = read_dukemtmc_reid("/data/DukeMTMC-reID")  # doctest: +SKIP
    >>> dataset.num_train_pids  # doctest: +SKIP
    702

    Args:
        root: path-like. The folder holding `bounding_box_train`, `query` and
            `bounding_box_test`.
        extensions: tuple of str. Image file extensions read. Defaults to
            `(".jpg", ".jpeg", ".png")`.

    Returns:
        A `ReIDDataset`, training pids relabelled `0..701`, camera ids 0-based.

    Raises:
        DatasetLayoutError: if a folder is missing or a split is empty.
        ValueError: if a file name does not follow the DukeMTMC-reID naming.
    """
    return reid_dataset.read_reid_folders(
        root,
        pattern=DUKEMTMC_PATTERN,
        extensions=extensions,
        name="DukeMTMC-reID",
        published=DUKEMTMC_PUBLISHED,
    )
