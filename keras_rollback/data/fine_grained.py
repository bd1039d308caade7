"""Fine-grained classification datasets of the paper's generality study (Table 6).

CUB-200-2011 and Food-101 come from TensorFlow Datasets (`caltech_birds2011`, `food101`);
FGVC-Aircraft, which TFDS does not build, is read from its published archive folder. All
three give train and test `tf.data.Dataset`s of `(images, labels)` batches with the same
resizing, augmentation and normalisation options as the ReID pipeline: one
`transform=ImageTransform(...)`, whose augmentations apply to the training split only.
"""

import dataclasses
from typing import NamedTuple

import tensorflow as tf

from keras_rollback.data import pipeline
from keras_rollback.data import reid_dataset

# The paper does not give the input size of its fine-grained experiments; 224x224 is the
# ImageNet size of the backbones.
FINE_GRAINED_IMAGE_SIZE = (224, 224)
# The default transform of the fine-grained builders: the ReID pipeline's (bicubic, random
# flip, "torch" normalisation) at 224x224.
FINE_GRAINED_TRANSFORM = pipeline.ImageTransform(image_size=FINE_GRAINED_IMAGE_SIZE)
TFDS_DATASETS = {
    "caltech_birds2011": ("train", "test"),
    "food101": ("train", "validation"),
}
AIRCRAFT_ANNOTATIONS = ("variant", "family", "manufacturer")
# FGVC-Aircraft images carry a 20-pixel copyright banner at the bottom (see its README).
AIRCRAFT_BANNER_ROWS = 20


class ImageRecord(NamedTuple):
    """An image file and its class index."""

    path: str
    label: int


@dataclasses.dataclass(frozen=True)
class FineGrainedDataset:
    """Train and test splits of a classification dataset, ready for `model.fit`.

    Args:
        name: str. Dataset name.
        train: `tf.data.Dataset` of `(images, labels)`, shuffled and augmented.
        test: `tf.data.Dataset` of `(images, labels)`, in a fixed order, not augmented.
        num_classes: int. Number of classes.
        class_names: tuple of str. Name of each class index.
    """

    name: str
    train: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    class_names: tuple


def load_tfds_fine_grained(
    name,
    *,
    data_dir=None,
    download=False,
    transform=FINE_GRAINED_TRANSFORM,
    batch_size=32,
    seed=None,
    shuffle_buffer_size=1000,
    num_parallel_calls=tf.data.AUTOTUNE,
    **legacy_kwargs,
):
    """Loads CUB-200-2011 or Food-101 from TensorFlow Datasets as training-ready splits.

    The training split is read with shuffled files and a shuffle buffer of decoded images
    (`shuffle_buffer_size` images of their original size are held in memory), then resized,
    augmented and normalised like the ReID training data. The test split (`test` for CUB,
    `validation` for Food-101) is resized and normalised only, in a fixed order. Nothing is
    downloaded unless `download=True`.

    Example:

    >>> birds = load_tfds_fine_grained("caltech_birds2011", download=True)  # doctest: +SKIP
    >>> model.fit(birds.train, validation_data=birds.test)  # doctest: +SKIP

    Args:
        name: str. `"caltech_birds2011"` (CUB-200-2011, 200 classes) or `"food101"`
            (101 classes).
        data_dir: str or `None`. TFDS data folder. Defaults to TFDS's own
            (`~/tensorflow_datasets`).
        download: bool. Whether TFDS may download and prepare the dataset. Defaults to
            `False`.
        transform: `ImageTransform`. Resize, augmentation (training split only) and
            normalisation. Defaults to `ImageTransform(image_size=(224, 224))`: bicubic,
            random flip, `"torch"` normalisation (`FINE_GRAINED_TRANSFORM`).
        batch_size: int. Images per batch. Defaults to `32`.
        seed: int or `None`. Seed of the file order, shuffle and augmentations. Defaults
            to `None`.
        shuffle_buffer_size: int. Decoded images in the shuffle buffer. Defaults to `1000`.
        num_parallel_calls: int. Parallelism of the maps. Defaults to `tf.data.AUTOTUNE`.
        **legacy_kwargs: Deprecated, removed in the next release: the fields of
            `ImageTransform` as separate keyword arguments, applied to
            `FINE_GRAINED_TRANSFORM` with a `DeprecationWarning`.

    Returns:
        A `FineGrainedDataset`.

    Raises:
        FileNotFoundError: if the dataset is not prepared in `data_dir` and
            `download=False`.
        ValueError: if `name` or another argument is invalid, or `transform` is given
            together with a deprecated keyword argument.
    """
    transform = pipeline.transform_from_legacy_kwargs(
        transform,
        legacy_kwargs,
        builder_name="load_tfds_fine_grained",
        default=FINE_GRAINED_TRANSFORM,
    )
    import tensorflow_datasets as tfds  # Optional dependency (the `tfds` extra).

    if name not in TFDS_DATASETS:
        raise ValueError(
            f"Unknown TFDS fine-grained dataset. Received: name={name!r}. Expected one of "
            f"{tuple(TFDS_DATASETS)}; FGVC-Aircraft is read by load_fgvc_aircraft."
        )
    pipeline.check_batch_size(batch_size)
    pipeline.check_seed(seed)
    if (
        not isinstance(shuffle_buffer_size, int)
        or isinstance(shuffle_buffer_size, bool)
        or shuffle_buffer_size <= 0
    ):
        raise ValueError(
            f"Expected a positive integer shuffle_buffer_size. Received: shuffle_buffer_size={shuffle_buffer_size!r}."
        )
    train_split, test_split = TFDS_DATASETS[name]
    try:
        train, info = tfds.load(
            name,
            split=train_split,
            data_dir=data_dir,
            download=download,
            as_supervised=True,
            shuffle_files=True,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
            with_info=True,
        )
        test = tfds.load(
            name, split=test_split, data_dir=data_dir, as_supervised=True, shuffle_files=False
        )
    except AssertionError as error:  # TFDS reports a missing dataset with an assert.
        raise FileNotFoundError(
            f"{name} is not prepared in data_dir={data_dir!r}; pass download=True or a data_dir "
            f"holding it. TFDS said: {error}"
        ) from error
    label = info.features["label"]
    train = train.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    batching = dict(
        batch_size=batch_size,
        seed=seed,
        drop_remainder=False,
        num_parallel_calls=num_parallel_calls,
    )
    return FineGrainedDataset(
        name=name,
        train=pipeline.make_image_label_batches(train, transform, **batching),
        test=pipeline.make_image_label_batches(test, transform.without_augmentation(), **batching),
        num_classes=label.num_classes,
        class_names=tuple(label.names),
    )


def read_fgvc_aircraft(root, *, annotation="variant"):
    """Reads the FGVC-Aircraft (Maji et al., 2013) image lists from the published archive.

    The archive `fgvc-aircraft-2013b` holds `data/images/<id>.jpg`, the class list
    `data/variants.txt` (or `families.txt`, `manufacturers.txt`) and the splits
    `data/images_variant_trainval.txt` and `data/images_variant_test.txt` with one
    `<id> <class name>` line per image: 6,667 training and 3,333 test images of 100
    variants (70 families, 30 manufacturers).

    Example:

    >>> train, test, names = read_fgvc_aircraft("/data/fgvc-aircraft-2013b")  # doctest: +SKIP
    >>> len(train), len(test), len(names)  # doctest: +SKIP
    (6667, 3333, 100)

    Args:
        root: path-like. The `fgvc-aircraft-2013b` folder.
        annotation: str. `"variant"`, `"family"` or `"manufacturer"`. Defaults to
            `"variant"`.

    Returns:
        A tuple `(train, test, class_names)`: lists of `ImageRecord(path, label)` for the
        `trainval` and `test` splits, and the class names in label order.

    Raises:
        DatasetLayoutError: if a file of the layout is missing or a split is empty.
        ValueError: if `annotation` is unknown, or a list line names an unknown class.
    """
    if annotation not in AIRCRAFT_ANNOTATIONS:
        raise ValueError(
            f"Unknown FGVC-Aircraft annotation. Received: annotation={annotation!r}. "
            f"Expected one of {AIRCRAFT_ANNOTATIONS}."
        )
    classes_file = f"data/{'families' if annotation == 'family' else annotation + 's'}.txt"
    split_files = [f"data/images_{annotation}_{split}.txt" for split in ("trainval", "test")]
    layout = (
        f"  {root}/data/images/<id>.jpg\n  {root}/{classes_file}  (one class name a line)\n"
        + "".join(f"  {root}/{name}  ('<id> <class name>' lines)\n" for name in split_files)
    )
    root = reid_dataset.check_dataset_root(
        root, ["data/images", classes_file, *split_files], layout
    )
    class_names = tuple(
        line.strip() for line in (root / classes_file).read_text().splitlines() if line.strip()
    )
    label_of = {name: index for index, name in enumerate(class_names)}
    splits = []
    for split_file in split_files:
        records = []
        for line_number, line in enumerate((root / split_file).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            image_id, _, class_name = line.strip().partition(" ")
            if class_name not in label_of:
                raise ValueError(
                    f"Line {line_number} of {str(root / split_file)!r} names the class {class_name!r}, "
                    f"which is not in {str(root / classes_file)!r}."
                )
            records.append(
                ImageRecord(str(root / "data" / "images" / f"{image_id}.jpg"), label_of[class_name])
            )
        if not records:
            raise reid_dataset.DatasetLayoutError(
                f"Empty split: {str(root / split_file)!r} lists no image."
            )
        splits.append(records)
    return splits[0], splits[1], class_names


def load_fgvc_aircraft(
    root,
    *,
    annotation="variant",
    remove_banner=True,
    transform=FINE_GRAINED_TRANSFORM,
    batch_size=32,
    seed=None,
    image_check="header",
    on_bad_image="raise",
    num_parallel_calls=tf.data.AUTOTUNE,
    **legacy_kwargs,
):
    """Loads FGVC-Aircraft from its archive folder as training-ready splits.

    Reads the lists with `read_fgvc_aircraft`, then builds the `trainval` split like
    `pipeline.make_train_dataset` (shuffled, augmented) and the `test` split in a fixed
    order without augmentation.

    Example:

    >>> aircraft = load_fgvc_aircraft("/data/fgvc-aircraft-2013b", seed=0)  # doctest: +SKIP
    >>> model.fit(aircraft.train, validation_data=aircraft.test)  # doctest: +SKIP

    Args:
        root: path-like. The `fgvc-aircraft-2013b` folder.
        annotation: str. `"variant"` (100 classes), `"family"` or `"manufacturer"`.
            Defaults to `"variant"`.
        remove_banner: bool. Whether to cut the 20-pixel copyright banner off the bottom
            of each image before resizing. Defaults to `True`.
        transform: `ImageTransform`. Resize, augmentation (training split only) and
            normalisation. Defaults to `ImageTransform(image_size=(224, 224))`: bicubic,
            random flip, `"torch"` normalisation (`FINE_GRAINED_TRANSFORM`).
        batch_size: int. Images per batch. Defaults to `32`.
        seed: int or `None`. Seed of the shuffle and augmentations. Defaults to `None`.
        image_check: str. See `image_files.find_bad_images`. Defaults to `"header"`.
        on_bad_image: str. `"raise"` or `"skip"`. Defaults to `"raise"`.
        num_parallel_calls: int. Parallelism of the maps. Defaults to `tf.data.AUTOTUNE`.
        **legacy_kwargs: Deprecated, removed in the next release: the fields of
            `ImageTransform` as separate keyword arguments, applied to
            `FINE_GRAINED_TRANSFORM` with a `DeprecationWarning`.

    Returns:
        A `FineGrainedDataset`.

    Raises:
        ValueError: if an argument is invalid, or `transform` is given together with a
            deprecated keyword argument.
    """
    transform = pipeline.transform_from_legacy_kwargs(
        transform, legacy_kwargs, builder_name="load_fgvc_aircraft", default=FINE_GRAINED_TRANSFORM
    )
    if not isinstance(remove_banner, bool):
        raise ValueError(
            f"Expected a bool remove_banner. Received: remove_banner={remove_banner!r}."
        )
    train_records, test_records, class_names = read_fgvc_aircraft(root, annotation=annotation)

    def decode(path):
        image = pipeline.read_image(path)
        return image[:-AIRCRAFT_BANNER_ROWS] if remove_banner else image

    splits = []
    for records, training in ((train_records, True), (test_records, False)):
        splits.append(
            pipeline.make_file_label_batches(
                records,
                transform if training else transform.without_augmentation(),
                batch_size=batch_size,
                shuffle=training,
                seed=seed,
                drop_remainder=False,
                image_check=image_check,
                on_bad_image=on_bad_image,
                num_parallel_calls=num_parallel_calls,
                decode=decode,
            )
        )
    return FineGrainedDataset(
        name=f"FGVC-Aircraft ({annotation})",
        train=splits[0],
        test=splits[1],
        num_classes=len(class_names),
        class_names=class_names,
    )
