"""Reader for MSMT17 (Wei et al., CVPR 2018) from its published list files."""

import os
import pathlib
import re

from keras_rollback.data import reid_dataset

MSMT17_IMAGE_DIRS = {"train": "train", "test": "test"}
MSMT17_V2_IMAGE_DIRS = {"train": "mask_train_v2", "test": "mask_test_v2"}
MSMT17_CAMERA_PATTERN = re.compile(r"\d+_\d+_(?P<camid>\d+)_")
MSMT17_PUBLISHED = reid_dataset.published_statistics(
    [(32_621, 1_041, 15), (11_659, 3_060, 15), (82_161, 3_060, 15)]
)
MSMT17_LAYOUT = """  <root>/list_train.txt, list_val.txt, list_query.txt, list_gallery.txt
      (one "PPPP/PPPP_NNN_CC_<time>_NNNN_N.jpg <pid>" line per image)
  <root>/train/ and <root>/test/ (MSMT17_V1), or mask_train_v2/ and mask_test_v2/ (V2)"""


def read_list_file(list_path, image_dir):
    """Reads one MSMT17 list file into `ReIDRecord`s with the listed pids.

    Raises:
        ValueError: naming the list file and line of a malformed line, or the image files
            the list names that do not exist.
    """
    records = []
    missing = []
    with open(list_path, encoding="utf-8") as list_file:
        for line_number, line in enumerate(list_file, start=1):
            if not line.strip():
                continue
            fields = line.split()
            camera = MSMT17_CAMERA_PATTERN.match(os.path.basename(fields[0]))
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit() or camera is None:
                raise ValueError(
                    f"Cannot parse line {line_number} of {str(list_path)!r}: {line.strip()!r}. "
                    "Expected '<pid folder>/<pid>_<index>_<camera>_<time>_<n>_<n>.jpg <pid>'."
                )
            path = image_dir / fields[0]
            if not path.is_file():
                missing.append(str(path))
            records.append(
                reid_dataset.ReIDRecord(str(path), int(fields[1]), int(camera.group("camid")) - 1)
            )
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) listed in {str(list_path)!r} do not exist, e.g. {missing[:3]}."
        )
    if not records:
        raise reid_dataset.DatasetLayoutError(f"Empty split: {str(list_path)!r} lists no image.")
    return records


def read_msmt17(root, *, include_val=True):
    """Reads MSMT17 (V1 or V2) from its list files.

    MSMT17 names its splits in `list_train.txt`, `list_val.txt`, `list_query.txt` and
    `list_gallery.txt`, one `relative/path.jpg pid` line per image; training and validation
    images live in `train/`, query and gallery images in `test/` (`mask_train_v2/` and
    `mask_test_v2/` in MSMT17_V2, detected automatically). The camera (1-15) is the third
    field of the file name. As in the community's reference code, the validation list (a
    subset of the training identities) is added to the training split by default: 32,621
    training images of 1,041 identities, 11,659 query and 82,161 gallery images.

    Example:

    >>> dataset = read_msmt17("/data/MSMT17_V1")  # doctest: +SKIP
    >>> dataset.num_train_pids  # doctest: +SKIP
    1041

    Args:
        root: path-like. The `MSMT17_V1` or `MSMT17_V2` folder.
        include_val: bool. Whether the images of `list_val.txt` join the training split.
            Defaults to `True`.

    Returns:
        A `ReIDDataset`, training pids relabelled `0..L-1`, camera ids 0-based.

    Raises:
        DatasetLayoutError: if a list file or image folder is missing, or a split is empty.
        ValueError: if a list line does not parse or names a missing image.
    """
    if not isinstance(include_val, bool):
        raise ValueError(f"Expected a bool include_val. Received: include_val={include_val!r}.")
    list_files = ["list_train.txt", "list_query.txt", "list_gallery.txt"]
    if include_val:
        list_files.append("list_val.txt")
    root = pathlib.Path(root)
    image_dirs = (
        MSMT17_V2_IMAGE_DIRS
        if (root / MSMT17_V2_IMAGE_DIRS["train"]).is_dir()
        else MSMT17_IMAGE_DIRS
    )
    root = reid_dataset.check_dataset_root(
        root, list_files + list(image_dirs.values()), MSMT17_LAYOUT
    )
    train_dir = root / image_dirs["train"]
    test_dir = root / image_dirs["test"]
    train = read_list_file(root / "list_train.txt", train_dir)
    if include_val:
        train += read_list_file(root / "list_val.txt", train_dir)
    splits = {
        "train": train,
        "query": read_list_file(root / "list_query.txt", test_dir),
        "gallery": read_list_file(root / "list_gallery.txt", test_dir),
    }
    return reid_dataset.make_dataset(
        "MSMT17", root, splits, published=MSMT17_PUBLISHED if include_val else None
    )
