"""Reader for a user's own ReID dataset: split folders, ids parsed from the paths by a regex."""

from keras_rollback.data import reid_dataset

DEFAULT_SPLIT_DIRS = {"train": "train", "query": "query", "gallery": "gallery"}


def read_folder_dataset(
    root,
    *,
    pattern,
    split_dirs=None,
    skip_unparseable=False,
    first_camera_index=0,
    extensions=reid_dataset.IMAGE_EXTENSIONS,
    name=None,
):
    """Reads a ReID dataset laid out as one folder per split, with any file naming.

    The person id (and, when the dataset has them, the camera id) is parsed from each
    image's path below its split folder with `pattern`, a regular expression with a named
    group `pid` and an optional group `camid`, matched at the start of the path: flat file
    names (`query/0042_cam3_0001.jpg` with `(?P<pid>\\d+)_cam(?P<camid>\\d+)_`) and one
    folder per identity (`train/0042/c3-001.png` with `(?P<pid>\\d+)/c(?P<camid>\\d+)-`)
    both work. Without a `camid` group the camera ids are `None` and the evaluation
    excludes only the query image itself from its ranked list (as retrieval benchmarks
    do); pointing the query and the gallery at the same folder makes every query a gallery
    image too (`ReIDDataset.query_gallery_indices`). Person id -1 marks junk images, as in
    Market-1501. Training ids are relabelled `0..L-1`.

    Example:

    >>> dataset = read_folder_dataset(  # doctest: +SKIP
    ...     "/data/my_reid", pattern=r"(?P<pid>\\d+)/cam(?P<camid>\\d+)_", skip_unparseable=True
    ... )

    From the command line: `--config.dataset.name=folder --config.dataset.root=/data/my_reid
    --config.dataset.pattern='(?P<pid>\\d+)/cam(?P<camid>\\d+)_'`.

    Args:
        root: path-like. Folder holding the split folders.
        pattern: str. Regular expression with a named group `pid` and optionally `camid`.
        split_dirs: mapping or `None`. Folder of each split `"train"`, `"query"`,
            `"gallery"` below `root`. Defaults to `train`, `query` and `gallery`.
        skip_unparseable: bool. Leave out images whose path does not match `pattern` (their
            count and the first few names are logged) instead of raising at the first one.
            Defaults to `False`.
        first_camera_index: int. Number of the first camera in the names (made 0); only
            equality of camera ids matters. Defaults to `0`.
        extensions: tuple of str. Image file extensions read. Defaults to
            `(".jpg", ".jpeg", ".png")`.
        name: str or `None`. Dataset name for the summary. Defaults to the folder name.

    Returns:
        A `ReIDDataset`; its summary is logged.

    Raises:
        DatasetLayoutError: if `root` or a split folder is missing, or a split is empty.
        ValueError: if `pattern` has no `pid` group, or a path does not match it and
            `skip_unparseable` is `False`.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(
            "A folder dataset needs a file name pattern with a named group `pid`, e.g. "
            "--config.dataset.pattern='(?P<pid>\\d+)_c(?P<camid>\\d+)'. "
            f"Received: pattern={pattern!r}."
        )
    if not isinstance(skip_unparseable, bool):
        raise ValueError(
            f"Expected a bool skip_unparseable. Received: skip_unparseable={skip_unparseable!r}."
        )
    return reid_dataset.read_reid_folders(
        root,
        pattern=pattern,
        split_dirs=DEFAULT_SPLIT_DIRS if split_dirs is None else split_dirs,
        first_camera_index=first_camera_index,
        extensions=extensions,
        name=name,
        on_unparseable="skip" if skip_unparseable else "raise",
        recursive=True,
    )
