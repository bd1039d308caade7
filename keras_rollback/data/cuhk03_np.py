"""Reader for CUHK03 under the new protocol (CUHK03-np, Zhong et al., CVPR 2017)."""

import pathlib

from keras_rollback.data import reid_dataset

CUHK03_NP_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d)_\d+"
CUHK03_NP_SUBSETS = ("labeled", "detected")
CUHK03_NP_PUBLISHED = {
    "labeled": reid_dataset.published_statistics(
        [(7_368, 767, 2), (1_400, 700, 2), (5_328, 700, 2)]
    ),
    "detected": reid_dataset.published_statistics(
        [(7_365, 767, 2), (1_400, 700, 2), (5_332, 700, 2)]
    ),
}


def read_cuhk03_np(root, subset="labeled", *, extensions=reid_dataset.IMAGE_EXTENSIONS):
    """Reads CUHK03-np (the 767/700 identity split), labeled or detected boxes.

    The new protocol of Zhong et al. ships CUHK03 as `cuhk03-np/labeled/` and
    `cuhk03-np/detected/`, each in the Market-1501 layout (`bounding_box_train`, `query`,
    `bounding_box_test`) with PNG images named `PPPP_cC_N.png`, e.g. `0001_c1_1.png`.
    767 identities train, 700 test. Labeled gives 7,368 / 1,400 / 5,328 and detected
    7,365 / 1,400 / 5,332 train / query / gallery images.

    Example:

    >>> dataset = read_cuhk03_np("/data/cuhk03-np", "detected")  # doctest: +SKIP
    >>> dataset.num_train_pids  # doctest: +SKIP
    767

    Args:
        root: path-like. The `cuhk03-np` folder, holding `labeled` and `detected`.
        subset: str. `"labeled"` (hand-drawn boxes) or `"detected"` (DPM boxes). Defaults
            to `"labeled"`.
        extensions: tuple of str. Image file extensions read. Defaults to
            `(".jpg", ".jpeg", ".png")`.

    Returns:
        A `ReIDDataset`, training pids relabelled `0..766`, camera ids 0-based.

    Raises:
        DatasetLayoutError: if a folder is missing or a split is empty.
        ValueError: if `subset` is unknown or a file name does not follow the naming.
    """
    if subset not in CUHK03_NP_SUBSETS:
        raise ValueError(
            f"Unknown CUHK03-np subset. Received: subset={subset!r}. "
            f"Expected one of {CUHK03_NP_SUBSETS}."
        )
    layout = "\n".join(
        f"  {root}/{name}/{{bounding_box_train,query,bounding_box_test}}/PPPP_cC_N.png"
        for name in CUHK03_NP_SUBSETS
    )
    reid_dataset.check_dataset_root(root, [subset], layout)
    return reid_dataset.read_reid_folders(
        pathlib.Path(root) / subset,
        pattern=CUHK03_NP_PATTERN,
        extensions=extensions,
        name=f"CUHK03-np ({subset})",
        published=CUHK03_NP_PUBLISHED[subset],
    )
