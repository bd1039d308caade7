"""Person re-identification datasets: records, splits, statistics and a generic reader.

Every ReID reader in this package returns a `ReIDDataset`: three lists of
`ReIDRecord(path, pid, camid)` for the `train`, `query` and `gallery` splits. Training
identities are relabelled to `0..num_train_pids - 1` (in increasing order of the original
id) so they can be used as classification targets; query and gallery records keep the
original person ids, which the evaluation protocol compares for equality. Camera ids are
0-based (`c1` in a file name is camera 0), as in the ReID community's reference code
(open-reid, torchreid); only their equality matters to the evaluation.

`read_reid_folders` reads any dataset stored as one folder per split whose file names carry
the person and camera ids, parsed with a regular expression; the Market-1501 and
DukeMTMC-reID readers are thin configurations of it.
"""

import dataclasses
import os
import pathlib
import re
from collections.abc import Mapping
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from absl import logging

from keras_rollback.user_error import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
UNPARSEABLE_ACTIONS = ("raise", "skip")
UNPARSEABLE_EXAMPLES = 5
SPLITS = ("train", "query", "gallery")
MARKET_SPLIT_DIRS = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}


class ReIDRecord(NamedTuple):
    """One image of a ReID split.

    Attributes:
        path: str. Path of the image file.
        pid: int. Person id: relabelled `0..L-1` in the training split, the dataset's own id
            in the query and gallery splits (0 marks a distractor).
        camid: int or `None`. 0-based camera id; `None` for datasets without cameras.
    """

    path: str
    pid: int
    camid: int | None


@dataclasses.dataclass(frozen=True)
class ReIDDataset:
    """The train, query and gallery splits of a person re-identification dataset.

    Example:

    >>> dataset = read_market1501("/data/Market-1501-v15.09.15")  # doctest: +SKIP
    >>> dataset.num_train_pids  # doctest: +SKIP
    751
    >>> print(dataset.summary())  # doctest: +SKIP

    Args:
        name: str. Name of the dataset, used in the summary.
        root: str. Folder the dataset was read from.
        train: list of `ReIDRecord`. Training images, pids relabelled `0..L-1`.
        query: list of `ReIDRecord`. Query images with their original pids.
        gallery: list of `ReIDRecord`. Gallery images with their original pids.
        published: mapping or `None`. Published statistics of the full dataset, in the
            format of `statistics()`, shown beside the counted ones by `summary()`.
            Defaults to `None`.
    """

    name: str
    root: str
    train: list
    query: list
    gallery: list
    published: Mapping | None = None

    @property
    def num_train_pids(self):
        """Number of training identities `L` (training labels are `0..L-1`)."""
        return len({record.pid for record in self.train})

    @property
    def has_camera_ids(self):
        """Whether the records carry camera ids (`False`: every `camid` is `None`)."""
        return any(record.camid is not None for record in self.query + self.gallery)

    def query_gallery_indices(self):
        """Index in `gallery` of each query image when the query images are in the gallery.

        Evaluation without camera ids excludes only the query image itself from its ranked
        list; that needs its place in the gallery. Returns `None` when no query image is a
        gallery image (separate query and gallery folders), else an int array
        `(len(query),)`; raises `ValueError` if only some queries are in the gallery.
        """
        position = {os.path.realpath(r.path): i for i, r in enumerate(self.gallery)}
        indices = [position.get(os.path.realpath(r.path)) for r in self.query]
        if all(index is None for index in indices):
            return None
        if any(index is None for index in indices):
            missing = next(r.path for r, i in zip(self.query, indices) if i is None)
            raise ValueError(
                f"{self.name}: some query images are gallery images and some are not "
                f"(e.g. {missing!r} is not in the gallery); use separate query and gallery "
                "folders, or the same folder for both."
            )
        return np.asarray(indices, dtype=np.int64)

    def split(self, name):
        """Returns the records of split `name` (`"train"`, `"query"` or `"gallery"`)."""
        if name not in SPLITS:
            raise ValueError(f"Unknown split. Received: name={name!r}. Expected one of {SPLITS}.")
        return getattr(self, name)

    def statistics(self):
        """Counts images, identities and cameras per split.

        Returns:
            A dict `{split: {"images": int, "ids": int, "cameras": int}}` for the splits
            `"train"`, `"query"` and `"gallery"`.
        """
        return {
            name: {
                "images": len(records),
                "ids": len({record.pid for record in records}),
                "cameras": len({record.camid for record in records} - {None}),
            }
            for name, records in ((name, self.split(name)) for name in SPLITS)
        }

    def matches_published(self):
        """Whether the counted statistics equal the published ones (`None` if unknown)."""
        if self.published is None:
            return None
        return self.statistics() == {name: dict(self.published[name]) for name in SPLITS}

    def summary(self):
        """Returns the statistics as a text table, beside the published counts if known."""
        stats = self.statistics()
        header = f"{'split':<8} {'images':>8} {'ids':>6} {'cameras':>8}"
        if self.published is not None:
            header += f"   published: {'images':>8} {'ids':>6} {'cameras':>8}"
        lines = [f"{self.name} at {self.root}", header]
        for name in SPLITS:
            row = stats[name]
            line = f"{name:<8} {row['images']:>8,} {row['ids']:>6,} {row['cameras']:>8,}"
            if self.published is not None:
                ref = self.published[name]
                line += f"              {ref['images']:>8,} {ref['ids']:>6,} {ref['cameras']:>8,}"
            lines.append(line)
        return "\n".join(lines)


class DatasetLayoutError(UserError, ValueError):
    """A dataset folder is missing, laid out differently than expected, or empty."""


def relabel_train_pids(records):
    """Relabels person ids to `0..L-1` in increasing order of the original id.

    Args:
        records: sequence of `ReIDRecord`.

    Returns:
        A list of `ReIDRecord` in the same order with relabelled `pid`s.
    """
    label_of = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [record._replace(pid=label_of[record.pid]) for record in records]


def log_dataset(dataset):
    """Logs `dataset.summary()`, and a warning when counts differ from the published ones."""
    logging.info("%s", dataset.summary())
    if dataset.matches_published() is False:
        logging.warning(
            "%s at %s: the counted statistics differ from the published ones (expected for a "
            "subset or a modified copy of the dataset).",
            dataset.name,
            dataset.root,
        )
    return dataset


def check_dataset_root(root, expected_entries, layout):
    """Raises `DatasetLayoutError` unless `root` is a folder holding `expected_entries`.

    The error names the missing entries, the expected layout and, when the dataset sits one
    folder deeper (as after unpacking an archive), the folder to pass instead.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(
            f"Dataset folder not found: {str(root)!r}. Expected a folder laid out as:\n{layout}"
        )
    missing = [entry for entry in expected_entries if not (root / entry).exists()]
    if not missing:
        return root
    nested = [
        child
        for child in sorted(root.iterdir())
        if child.is_dir() and all((child / entry).exists() for entry in expected_entries)
    ]
    hint = f" The dataset seems to be in {str(nested[0])!r}: pass that folder." if nested else ""
    present = sorted(child.name for child in root.iterdir())[:20]
    raise DatasetLayoutError(
        f"Unexpected layout in {str(root)!r}: missing {missing}. Found: {present}. "
        f"Expected a folder laid out as:\n{layout}{hint}"
    )


def parse_file_names(
    folder,
    pattern,
    *,
    first_camera_index,
    extensions=IMAGE_EXTENSIONS,
    on_unparseable="raise",
    recursive=False,
):
    """Parses `(path, pid, camid)` from the image file names of one split folder.

    Args:
        folder: path-like. The split folder. Files whose extension is not in `extensions`
            (such as the `Thumbs.db` files shipped with Market-1501) are ignored.
        pattern: str or compiled regex with a named group `pid` and optionally `camid`,
            matched with `re.match` against each file name (with `recursive`, against the
            path below `folder` with `/` separators, e.g. `0001/cam2_07.jpg`). Without a
            `camid` group every record's camera id is `None`.
        first_camera_index: int. Camera number of the first camera in the file names,
            subtracted to make camera ids 0-based.
        extensions: tuple of str. Lower-case image extensions. Defaults to
            `(".jpg", ".jpeg", ".png")`.
        on_unparseable: str. `"raise"` stops at the first file whose name does not match;
            `"skip"` leaves such files out and logs a warning with their count and the first
            few names. Defaults to `"raise"`.
        recursive: bool. Read the images of sub-folders too. Defaults to `False`.

    Returns:
        A list of `ReIDRecord` sorted by path, with the original person ids.

    Raises:
        DatasetLayoutError: if the folder is missing or holds no image.
        ValueError: if a file name does not match `pattern` and `on_unparseable="raise"`,
            or names a camera below `first_camera_index`.
    """
    folder = pathlib.Path(folder)
    regex = re.compile(pattern)
    if "pid" not in regex.groupindex:
        raise ValueError(
            "The file name pattern needs a named group `pid` (and optionally `camid`), "
            f"e.g. r'(?P<pid>\\d+)_c(?P<camid>\\d+)'. Received: pattern={regex.pattern!r}."
        )
    if on_unparseable not in UNPARSEABLE_ACTIONS:
        raise ValueError(
            f"Received: on_unparseable={on_unparseable!r}. Expected one of {UNPARSEABLE_ACTIONS}."
        )
    if not folder.is_dir():
        raise DatasetLayoutError(f"Split folder not found: {str(folder)!r}.")
    if recursive:
        names = sorted(
            path.relative_to(folder).as_posix()
            for path in folder.rglob("*")
            if path.name.lower().endswith(extensions) and path.is_file()
        )
    else:
        names = sorted(name for name in os.listdir(folder) if name.lower().endswith(extensions))
    if not names:
        raise DatasetLayoutError(
            f"Empty split: no {'/'.join(extensions)} image in {str(folder)!r}."
        )
    has_camera = "camid" in regex.groupindex
    records, unparseable = [], []
    for name in names:
        match = regex.match(name)
        if match is None:
            if on_unparseable == "raise":
                raise DatasetLayoutError(
                    f"Cannot parse the person and camera ids of {str(folder / name)!r}: the "
                    f"file name does not match the pattern {regex.pattern!r}. Pass "
                    "on_unparseable='skip' to leave such files out."
                )
            unparseable.append(name)
            continue
        camid = int(match.group("camid")) - first_camera_index if has_camera else None
        if camid is not None and camid < 0:
            raise DatasetLayoutError(
                f"Invalid camera number {match.group('camid')} in {str(folder / name)!r}: "
                f"cameras are numbered from {first_camera_index} in this dataset's file names."
            )
        records.append(ReIDRecord(str(folder / name), int(match.group("pid")), camid))
    if unparseable:
        logging.warning(
            "Skipped %d of %d images in %s whose names do not match %r, e.g. %s.",
            len(unparseable),
            len(names),
            folder,
            regex.pattern,
            ", ".join(unparseable[:UNPARSEABLE_EXAMPLES]),
        )
    return records


def drop_pids(records, pids):
    """Returns the records whose pid is not in `pids`."""
    pids = frozenset(pids)
    return [record for record in records if record.pid not in pids]


def make_dataset(name, root, splits, *, published=None):
    """Builds a `ReIDDataset` from per-split records with original pids, and logs it.

    Relabels the training pids and raises `DatasetLayoutError` naming `root` when a split is
    empty (for example when it held only junk images).
    """
    for split_name in SPLITS:
        if not splits[split_name]:
            raise DatasetLayoutError(
                f"Empty split: {split_name!r} of {name} at {str(root)!r} has no usable image."
            )
    dataset = ReIDDataset(
        name=name,
        root=str(root),
        train=relabel_train_pids(splits["train"]),
        query=list(splits["query"]),
        gallery=list(splits["gallery"]),
        published=published,
    )
    return log_dataset(dataset)


def read_reid_folders(
    root,
    *,
    pattern,
    split_dirs=None,
    junk_pids=(-1,),
    first_camera_index=1,
    extensions=IMAGE_EXTENSIONS,
    name=None,
    published=None,
    on_unparseable="raise",
    recursive=False,
):
    """Reads a ReID dataset stored as one folder per split with ids in the file names.

    Lets users add their own dataset without writing a class: give the folder of each split
    and a regular expression that extracts the person and camera ids from a file name.
    Images whose pid is in `junk_pids` are dropped from every split (the Market-1501
    evaluation ignores them anyway); every other pid is kept, including distractors.

    Example:

    >>> dataset = read_reid_folders(  # doctest: +SKIP
    ...     "/data/my_reid",
    ...     pattern=r"(?P<pid>\\d+)_cam(?P<camid>\\d+)_",
    ...     split_dirs={"train": "train", "query": "query", "gallery": "gallery"},
    ...     first_camera_index=0,
    ... )

    Args:
        root: path-like. Folder holding the split folders.
        pattern: str. Regular expression with a named group `pid` and optionally `camid`
            (without it the camera ids are `None`), matched at the start of each file name
            (see `parse_file_names`).
        split_dirs: mapping or `None`. Folder of each split `"train"`, `"query"`,
            `"gallery"`, relative to `root`. Defaults to the Market-1501 folders
            (`bounding_box_train`, `query`, `bounding_box_test`).
        junk_pids: iterable of int. Person ids dropped from every split. Defaults to `(-1,)`.
        first_camera_index: int. Number of the first camera in the file names (made 0).
            Defaults to `1`.
        extensions: tuple of str. Lower-case image file extensions; other files are ignored.
            Defaults to `(".jpg", ".jpeg", ".png")`.
        name: str or `None`. Dataset name for the summary. Defaults to the folder name.
        published: mapping or `None`. Published statistics, see `ReIDDataset`. Defaults to
            `None`.
        on_unparseable: str. `"raise"` or `"skip"` (logged with a count and examples), see
            `parse_file_names`. Defaults to `"raise"`.
        recursive: bool. Read the sub-folders of each split folder too (the pattern then
            sees the path below the split folder). Defaults to `False`.

    Returns:
        A `ReIDDataset`. Its summary is logged.

    Raises:
        DatasetLayoutError: if `root` or a split folder is missing, or a split is empty.
        ValueError: if a file name does not match `pattern`, or an argument is invalid.
    """
    split_dirs = dict(MARKET_SPLIT_DIRS if split_dirs is None else split_dirs)
    if set(split_dirs) != set(SPLITS):
        raise ValueError(
            f"split_dirs must name a folder for each of {SPLITS}. Received: split_dirs={split_dirs}."
        )
    if not isinstance(first_camera_index, int) or isinstance(first_camera_index, bool):
        raise ValueError(
            f"Expected an integer first_camera_index. Received: first_camera_index={first_camera_index!r}."
        )
    layout = "\n".join(
        f"  {root}/{split_dirs[s]}/  ({s} images named like {pattern!r})" for s in SPLITS
    )
    root = check_dataset_root(root, [split_dirs[s] for s in SPLITS], layout)
    splits = {
        split_name: drop_pids(
            parse_file_names(
                root / split_dirs[split_name],
                pattern,
                first_camera_index=first_camera_index,
                extensions=extensions,
                on_unparseable=on_unparseable,
                recursive=recursive,
            ),
            junk_pids,
        )
        for split_name in SPLITS
    }
    return make_dataset(name or root.name, root, splits, published=published)


def published_statistics(rows: Sequence):
    """Builds a published-statistics mapping from `(images, ids, cameras)` per split."""
    return {
        split_name: dict(zip(("images", "ids", "cameras"), row))
        for split_name, row in zip(SPLITS, rows)
    }
