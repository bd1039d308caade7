"""`tf.data` input pipelines for training and evaluation, usable from every Keras backend.

The training pipeline follows the authors' released code: read the image, resize it to
288x144 with bicubic interpolation, flip it horizontally at random, normalise it for the
backbone, shuffle, and batch by 32 keeping the last partial batch. Random padding-and-crop
and random erasing are opt-in. The evaluation pipeline keeps every image's person id,
camera id and path beside it, in the order of the records.

`tf.data` feeds `model.fit` and `model.predict` on the TensorFlow, JAX and PyTorch backends
alike, so nothing here depends on the Keras backend.
"""

import dataclasses
import math
import warnings

import tensorflow as tf

from keras_rollback.data import image_files

PREPROCESSING_MODES = ("torch", "caffe", "tf", "none")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "area", "lanczos3", "lanczos5", "mitchellcubic")
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
RANDOM_ERASING_AREA = (0.02, 0.4)
RANDOM_ERASING_ASPECT = (0.3, 1 / 0.3)
DEFAULT_IMAGE_SIZE = (288, 144)


def normalize_images(images, preprocessing="torch"):
    """Normalises RGB images with values in [0, 255] for a backbone.

    Written in TensorFlow ops so it runs inside `tf.data` whatever the Keras backend.

    Args:
        images: float32 tensor `[..., H, W, 3]`, RGB in [0, 255].
        preprocessing: str. `"torch"`: scale to [0, 1], subtract the ImageNet mean and divide
            by its standard deviation (the authors' code, torchvision models). `"caffe"`:
            RGB to BGR and subtract the ImageNet mean pixel, like
            `keras.applications.resnet50.preprocess_input`. `"tf"`: scale to [-1, 1], like
            `keras.applications.inception_v3.preprocess_input`. `"none"`: unchanged.
            Defaults to `"torch"`.

    Returns:
        A float32 tensor of the same shape.
    """
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(
            f"Unknown preprocessing. Received: preprocessing={preprocessing!r}. "
            f"Expected one of {PREPROCESSING_MODES}."
        )
    images = tf.cast(images, tf.float32)
    if preprocessing == "torch":
        return (images / 255.0 - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    if preprocessing == "caffe":
        return images[..., ::-1] - CAFFE_MEAN_BGR
    if preprocessing == "tf":
        return images / 127.5 - 1.0
    return images


@dataclasses.dataclass(frozen=True)
class ImageTransform:
    """Validated options shared by the pipelines: resizing, augmentation, normalisation.

    Args:
        image_size: tuple `(height, width)` of positive ints. Defaults to `(288, 144)`.
        preprocessing: str. See `normalize_images`. Defaults to `"torch"`.
        interpolation: str. `tf.image.resize` method. Defaults to `"bicubic"`.
        random_flip: bool. Random horizontal flip (training only). Defaults to `True`.
        random_crop_padding: int. Zero-pad by this many pixels, then crop back at random
            (training only); 0 disables it. Defaults to `0`.
        random_erasing_probability: float in [0, 1]. Probability of erasing a random
            rectangle (2-40% of the area, aspect 0.3-3.3) to the mean pixel (0 after
            normalisation), training only. Defaults to `0.0`.
    """

    image_size: tuple = DEFAULT_IMAGE_SIZE
    preprocessing: str = "torch"
    interpolation: str = "bicubic"
    random_flip: bool = True
    random_crop_padding: int = 0
    random_erasing_probability: float = 0.0

    def __post_init__(self):
        size = self.image_size
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise ValueError(
                f"Expected image_size=(height, width) with positive integers. Received: image_size={size!r}."
            )
        object.__setattr__(self, "image_size", tuple(size))
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"Unknown preprocessing. Received: preprocessing={self.preprocessing!r}. "
                f"Expected one of {PREPROCESSING_MODES}."
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"Unknown interpolation. Received: interpolation={self.interpolation!r}. "
                f"Expected one of {INTERPOLATIONS}."
            )
        if not isinstance(self.random_flip, bool):
            raise ValueError(
                f"Expected a bool random_flip. Received: random_flip={self.random_flip!r}."
            )
        padding = self.random_crop_padding
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise ValueError(
                f"Expected a non-negative integer random_crop_padding. Received: random_crop_padding={padding!r}."
            )
        probability = self.random_erasing_probability
        if (
            not isinstance(probability, (int, float))
            or isinstance(probability, bool)
            or not 0 <= probability <= 1
        ):
            raise ValueError(
                "Expected random_erasing_probability in [0, 1]. "
                f"Received: random_erasing_probability={probability!r}."
            )

    def resize(self, image):
        """Resizes a uint8 `[h, w, 3]` image to `image_size`, as float32 in [0, 255].

        The result is clipped and rounded to integer levels, as PIL's bicubic resize
        (used by the authors' torchvision pipeline) produces uint8 pixels.
        """
        resized = tf.image.resize(image, self.image_size, method=self.interpolation, antialias=True)
        resized = tf.cast(resized, tf.float32)  # "nearest" keeps the input's uint8.
        return tf.round(tf.clip_by_value(resized, 0.0, 255.0))

    def train_transform(self, image, seed):
        """Augments and normalises one resized image; `seed` is an int64 `[2]` tensor."""
        flip_seed, crop_seed, erase_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        if self.random_flip:
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        if self.random_crop_padding:
            pad = self.random_crop_padding
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(padded, (*self.image_size, 3), crop_seed)
        image = normalize_images(image, self.preprocessing)
        if self.random_erasing_probability:
            image = self.random_erase(image, erase_seed)
        return image

    def random_erase(self, image, seed):
        """Sets a random rectangle of a normalised image to 0 with the erasing probability."""
        height, width = self.image_size
        apply, area_u, aspect_u, top_u, left_u = tf.unstack(tf.random.stateless_uniform([5], seed))
        area = (
            height
            * width
            * (RANDOM_ERASING_AREA[0] + area_u * (RANDOM_ERASING_AREA[1] - RANDOM_ERASING_AREA[0]))
        )
        log_low, log_high = math.log(RANDOM_ERASING_ASPECT[0]), math.log(RANDOM_ERASING_ASPECT[1])
        aspect = tf.exp(log_low + aspect_u * (log_high - log_low))
        box_h = tf.minimum(tf.round(tf.sqrt(area * aspect)), height)
        box_w = tf.minimum(tf.round(tf.sqrt(area / aspect)), width)
        top = tf.floor(top_u * (height - box_h + 1))
        left = tf.floor(left_u * (width - box_w + 1))
        rows = tf.range(height, dtype=tf.float32)[:, None]
        cols = tf.range(width, dtype=tf.float32)[None, :]
        inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
        erase = inside & (apply < self.random_erasing_probability)
        return tf.where(erase[..., None], 0.0, image)

    def eval_transform(self, image):
        """Normalises one resized image (no augmentation)."""
        return normalize_images(image, self.preprocessing)

    def without_augmentation(self):
        """This transform with the flip, the crop and the erasing off: an evaluation split's."""
        return dataclasses.replace(
            self, random_flip=False, random_crop_padding=0, random_erasing_probability=0.0
        )


TRANSFORM_FIELDS = tuple(field.name for field in dataclasses.fields(ImageTransform))
# The defaults of the builders: the authors' 288x144 bicubic resize, ImageNet mean/std, flip.
DEFAULT_TRANSFORM = ImageTransform()


def _constructor_text(transform):
    """`ImageTransform(...)` with the fields of `transform` that differ from the defaults."""
    changed = (
        f"{name}={getattr(transform, name)!r}"
        for name in TRANSFORM_FIELDS
        if getattr(transform, name) != getattr(DEFAULT_TRANSFORM, name)
    )
    return f"ImageTransform({', '.join(changed)})"


def transform_from_legacy_kwargs(
    transform, legacy_kwargs, *, builder_name, default, allowed=TRANSFORM_FIELDS
):
    """The `ImageTransform` of a data builder given `transform=` or, deprecated, its fields.

    The builders once took the fields of `ImageTransform` (`image_size`, `preprocessing`,
    `interpolation`, `random_flip`, `random_crop_padding`, `random_erasing_probability`) as
    separate keyword arguments. For one release they still do: each builder collects them in
    `**legacy_kwargs` and calls this, which applies them to the builder's `default`
    transform and emits a `DeprecationWarning` that points at the builder's caller and
    spells out the `transform=ImageTransform(...)` to pass instead.

    Args:
        transform: The builder's `transform` argument; `default` itself when not given.
        legacy_kwargs: dict. The deprecated keyword arguments the builder received.
        builder_name: str. The builder's name, for the messages.
        default: `ImageTransform`. The default of the builder's `transform` argument.
        allowed: tuple of str. The fields the builder accepted as keyword arguments.
            Defaults to all of them.

    Returns:
        `transform`, or `default` with the deprecated keyword arguments applied.

    Raises:
        TypeError: if a keyword argument is not one the builder ever accepted.
        ValueError: if `transform` is not an `ImageTransform`, if it is given together with
            a deprecated keyword argument, or if a deprecated keyword argument's value is
            invalid.
    """
    unexpected = [name for name in legacy_kwargs if name not in allowed]
    if unexpected:
        raise TypeError(f"{builder_name}() got an unexpected keyword argument {unexpected[0]!r}.")
    if not isinstance(transform, ImageTransform):
        raise ValueError(
            f"{builder_name}() expects transform=ImageTransform(...). "
            f"Received: transform={transform!r}."
        )
    if not legacy_kwargs:
        return transform
    given = {name: legacy_kwargs[name] for name in TRANSFORM_FIELDS if name in legacy_kwargs}
    given_text = ", ".join(f"{name}={value!r}" for name, value in given.items())
    if transform is not default:
        raise ValueError(
            f"{builder_name}() received both transform= and the deprecated keyword "
            f"argument(s) {', '.join(given)}: put those settings in the ImageTransform and "
            f"pass transform= alone. Received: transform={transform!r}, {given_text}."
        )
    transform = dataclasses.replace(default, **given)
    warnings.warn(
        f"{builder_name}({given_text}) is deprecated and will be removed in the next "
        f"release: pass transform={_constructor_text(transform)} instead.",
        DeprecationWarning,
        stacklevel=3,  # The builder's caller: stacklevel=2 as seen from the builder.
    )
    return transform


def read_image(path):
    """Reads and decodes a JPEG or PNG file to a uint8 `[h, w, 3]` tensor, as PIL does."""
    return image_files.decode_image(tf.io.read_file(path))


def check_batch_size(batch_size):
    """Raises `ValueError` echoing `batch_size` unless it is a positive int."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(
            f"Expected a positive integer batch_size. Received: batch_size={batch_size!r}."
        )


def check_seed(seed):
    """Raises `ValueError` echoing `seed` unless it is an int or `None`."""
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(f"Expected an integer seed or None. Received: seed={seed!r}.")


def check_num_parallel_calls(num_parallel_calls):
    """Raises `ValueError` echoing the value unless it is positive or `tf.data.AUTOTUNE`."""
    if (
        not isinstance(num_parallel_calls, int)
        or isinstance(num_parallel_calls, bool)
        or (num_parallel_calls <= 0 and num_parallel_calls != tf.data.AUTOTUNE)
    ):
        raise ValueError(
            "Expected a positive integer num_parallel_calls or tf.data.AUTOTUNE. "
            f"Received: num_parallel_calls={num_parallel_calls!r}."
        )


def check_records(records, name):
    """Returns `records` as a list; raises `ValueError` naming `name` if it is empty."""
    records = list(records)
    if not records:
        raise ValueError(f"Received no records: {name} is empty.")
    return records


def make_image_label_batches(
    dataset,
    transform,
    *,
    batch_size,
    seed,
    drop_remainder,
    num_parallel_calls,
    decode=None,
    randoms=None,
):
    """Turns a dataset of `(image or path, label)` pairs into `(images, labels)` batches.

    Applies `transform.resize` and `transform.train_transform` (augmentations enabled in
    `transform`, then normalisation) in a parallel map, batches and prefetches. Each element
    draws its own stateless augmentation seed from `tf.data.Dataset.random`, so a given
    `seed` reproduces every flip, crop and erasure, and each epoch draws new ones.

    Args:
        dataset: `tf.data.Dataset` of `(source, label)`; `source` is a uint8 `[h, w, 3]`
            image, or whatever `decode` turns into one (such as a file path).
        transform: `ImageTransform`.
        batch_size: int. Images per batch.
        seed: int or `None`. Seed of the augmentations.
        drop_remainder: bool. Whether to drop the last partial batch.
        num_parallel_calls: int. Parallelism of the map.
        decode: callable or `None`. Maps `source` to a uint8 image. Defaults to `None`
            (`source` is the image).
        randoms: `tf.data.Dataset` of int64 scalars or `None`. The augmentation seed of each
            element; `None` draws them from `seed`. Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of float32 `[B, H, W, 3]` images and int32 `[B]` labels.
    """

    def load(item, random_value):
        source, label = item
        image = transform.resize(decode(source) if decode else source)
        seed_pair = tf.stack([random_value, tf.constant(0, tf.int64)])
        return transform.train_transform(image, seed_pair), tf.cast(label, tf.int32)

    check_num_parallel_calls(num_parallel_calls)
    if randoms is None:
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip((dataset, randoms))
    dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def make_file_label_batches(
    records,
    transform,
    *,
    batch_size,
    shuffle,
    seed,
    drop_remainder,
    image_check,
    on_bad_image,
    num_parallel_calls,
    decode=read_image,
    start_epoch=None,
):
    """Checks `(path, label, ...)` records and batches their images with `transform`.

    The work of `make_train_dataset` once its options are validated into `transform`;
    `decode` (a path to a uint8 image) lets a dataset adapt the decoding, e.g. to crop.
    """
    if start_epoch is not None and (
        isinstance(start_epoch, bool)
        or not isinstance(start_epoch, int)
        or start_epoch < 0
        or seed is None
    ):
        raise ValueError(
            "`start_epoch` must be an integer >= 0 and needs an integer `seed`. "
            f"Received: start_epoch={start_epoch!r}, seed={seed!r}"
        )
    check_batch_size(batch_size)
    check_seed(seed)
    check_num_parallel_calls(num_parallel_calls)
    records = check_records(records, "records")
    negative = [record for record in records if record[1] < 0]
    if negative:
        raise ValueError(
            f"Training labels must be non-negative; {len(negative)} record(s) have a negative "
            f"label, e.g. {negative[0]}. Pass ReIDDataset.train, whose pids are relabelled 0..L-1."
        )
    records = image_files.drop_bad_images(records, check=image_check, on_bad_image=on_bad_image)
    paths = tf.constant([str(record[0]) for record in records])
    labels = tf.constant([record[1] for record in records], tf.int32)
    if start_epoch is not None:
        return _epoch_keyed_batches(
            paths,
            labels,
            start_epoch,
            transform,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
            num_parallel_calls=num_parallel_calls,
            decode=decode,
        )
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        dataset = dataset.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    return make_image_label_batches(
        dataset,
        transform,
        batch_size=batch_size,
        seed=seed,
        drop_remainder=drop_remainder,
        num_parallel_calls=num_parallel_calls,
        decode=decode,
    )


def _epoch_keyed_batches(paths, labels, start_epoch, transform, *, shuffle, seed, **batching):
    """Endless epochs from `start_epoch` on; epoch `e`'s order and augmentations depend only
    on `(seed, e)`, so a run resumed at epoch `e` in a new process sees what an
    uninterrupted run would have seen."""
    size = int(paths.shape[0])

    def one_epoch(epoch):
        order_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(
                tf.stack([tf.constant(seed, tf.int64), epoch]), 2
            )
        )
        order = (
            tf.argsort(tf.random.stateless_uniform([size], order_seed))
            if shuffle
            else tf.range(size)
        )
        randoms = tf.random.stateless_uniform(
            [size], augment_seed, minval=None, maxval=None, dtype=tf.int64
        )
        return make_image_label_batches(
            tf.data.Dataset.from_tensor_slices((tf.gather(paths, order), tf.gather(labels, order))),
            transform,
            seed=seed,
            randoms=tf.data.Dataset.from_tensor_slices(randoms),
            **batching,
        )

    return tf.data.Dataset.range(start_epoch, 2**62).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def make_train_dataset(
    records,
    *,
    transform=DEFAULT_TRANSFORM,
    batch_size=32,
    shuffle=True,
    seed=None,
    drop_remainder=False,
    image_check="header",
    on_bad_image="raise",
    num_parallel_calls=tf.data.AUTOTUNE,
    start_epoch=None,
    **legacy_kwargs,
):
    """Builds the training `tf.data.Dataset` of `(images, labels)` batches for `model.fit`.

    Reads each record's image, resizes it (bicubic by default), flips it horizontally at
    random, normalises it for the backbone and batches it with the record's `pid` as the
    label. The whole file list is shuffled each epoch (a buffer as large as the dataset, so
    the order is a uniform permutation), the map runs in parallel and batches are
    prefetched. The defaults follow the authors' released code: 288x144, batch 32,
    ImageNet mean/std, flip only, last partial batch kept. Unreadable files are found when
    the dataset is built, see `image_check` and `on_bad_image`.

    Example:

    >>> dataset = read_market1501("/data/Market-1501-v15.09.15")  # doctest: +SKIP
    >>> train = make_train_dataset(dataset.train, seed=0)  # doctest: +SKIP
    >>> model.fit(train, epochs=40)  # doctest: +SKIP
    >>> bot = ImageTransform(image_size=(256, 128), random_crop_padding=10,
    ...                      random_erasing_probability=0.5)  # doctest: +SKIP
    >>> train = make_train_dataset(dataset.train, transform=bot, seed=0)  # doctest: +SKIP

    Args:
        records: sequence of `(path, label, ...)` tuples, such as `ReIDRecord`s (the `pid`
            is the label). Usually `ReIDDataset.train`, whose pids are `0..L-1`.
        transform: `ImageTransform`. Resize, augmentation and normalisation of each image.
            Defaults to `ImageTransform()`: 288x144 bicubic, random flip, `"torch"`
            normalisation, no crop, no erasing (`DEFAULT_TRANSFORM`).
        batch_size: int. Images per batch. Defaults to `32`.
        shuffle: bool. Whether to reshuffle the records each epoch. Defaults to `True`.
        seed: int or `None`. Seed of the shuffle and the augmentations; `None` draws them
            at random. Defaults to `None`.
        drop_remainder: bool. Whether to drop the last partial batch. Defaults to `False`.
        image_check: str. `"header"`, `"decode"` or `"none"`, see `find_bad_images`.
            Defaults to `"header"`.
        on_bad_image: str. `"raise"` or `"skip"` (drop and log), see `drop_bad_images`.
            Defaults to `"raise"`.
        num_parallel_calls: int. Parallelism of the decode-and-augment map. Defaults to
            `tf.data.AUTOTUNE`.
        start_epoch: int or `None`. For runs that must resume exactly: an endless dataset
            whose epoch `e` (counted from `start_epoch`) is shuffled and augmented from
            `(seed, e)` alone, so a run restarted at epoch `e` in a new process sees the
            same batches as an uninterrupted one. Needs `seed`; train it with
            `model.fit(..., steps_per_epoch=steps_per_epoch(len(records), batch_size))`.
            `None` gives the usual finite dataset, reshuffled each time it is iterated.
            Defaults to `None`.
        **legacy_kwargs: Deprecated, removed in the next release: the fields of
            `ImageTransform` (`image_size`, `preprocessing`, `interpolation`, `random_flip`,
            `random_crop_padding`, `random_erasing_probability`) as separate keyword
            arguments. Each call with them emits a `DeprecationWarning`; pass
            `transform=ImageTransform(...)` instead.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 `[B, H, W, 3]` and int32 `[B]`.

    Raises:
        BadImageError: if a file is unreadable and `on_bad_image="raise"`.
        ValueError: if an argument is invalid, `records` is empty, or `transform` is given
            together with a deprecated keyword argument.
    """
    transform = transform_from_legacy_kwargs(
        transform, legacy_kwargs, builder_name="make_train_dataset", default=DEFAULT_TRANSFORM
    )
    return make_file_label_batches(
        records,
        transform,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_remainder=drop_remainder,
        image_check=image_check,
        on_bad_image=on_bad_image,
        num_parallel_calls=num_parallel_calls,
        start_epoch=start_epoch,
    )


def steps_per_epoch(num_records, batch_size, drop_remainder=False):
    """Batches in one epoch of `num_records` records: what `fit` needs with `start_epoch`."""
    return num_records // batch_size if drop_remainder else -(-num_records // batch_size)


EVAL_LEGACY_FIELDS = ("image_size", "preprocessing", "interpolation")


def make_eval_dataset(
    records,
    *,
    transform=DEFAULT_TRANSFORM,
    batch_size=32,
    image_check="header",
    on_bad_image="raise",
    num_parallel_calls=tf.data.AUTOTUNE,
    **legacy_kwargs,
):
    """Builds an evaluation `tf.data.Dataset` of dict batches, in the order of `records`.

    Each batch is `{"image": float32 [B, H, W, 3], "pid": int32 [B], "camid": int32 [B],
    "path": string [B]}` (no `camid` when the records have none, `camid=None`: the
    evaluation then excludes only the query itself): the images are resized and normalised
    like the training ones,
    without augmentation, and the ids and paths travel with them for the metrics and for
    visualising ranked lists. The last batch may be partial.

    Example:

    >>> query = make_eval_dataset(dataset.query)  # doctest: +SKIP
    >>> for batch in query.as_numpy_iterator():  # doctest: +SKIP
    ...     features = feature_model.predict_on_batch(batch["image"])

    Args:
        records: sequence of `ReIDRecord`, e.g. `ReIDDataset.query` or `.gallery`.
        transform: `ImageTransform`. Only its resize (`image_size`, `interpolation`) and
            normalisation (`preprocessing`) apply: its augmentation fields are ignored, so
            the training transform can be passed as it is. Defaults to `ImageTransform()`:
            288x144 bicubic, `"torch"` normalisation (`DEFAULT_TRANSFORM`).
        batch_size: int. Images per batch. Defaults to `32`.
        image_check: str. See `find_bad_images`. Defaults to `"header"`.
        on_bad_image: str. `"raise"` or `"skip"`; skipping changes the evaluation set, and
            the warning says so. Defaults to `"raise"`.
        num_parallel_calls: int. Parallelism of the decode map. Defaults to
            `tf.data.AUTOTUNE`.
        **legacy_kwargs: Deprecated, removed in the next release: `image_size`,
            `preprocessing` and `interpolation` as separate keyword arguments. Each call
            with them emits a `DeprecationWarning`; pass `transform=ImageTransform(...)`.

    Returns:
        A `tf.data.Dataset` of dicts with keys `"image"`, `"pid"`, `"camid"` (if any), `"path"`.

    Raises:
        BadImageError: if a file is unreadable and `on_bad_image="raise"`.
        ValueError: if an argument is invalid, `records` is empty, or `transform` is given
            together with a deprecated keyword argument.
    """
    transform = transform_from_legacy_kwargs(
        transform,
        legacy_kwargs,
        builder_name="make_eval_dataset",
        default=DEFAULT_TRANSFORM,
        allowed=EVAL_LEGACY_FIELDS,
    )
    check_batch_size(batch_size)
    check_num_parallel_calls(num_parallel_calls)
    records = check_records(records, "records")
    records = image_files.drop_bad_images(records, check=image_check, on_bad_image=on_bad_image)
    columns = {
        "path": [str(record.path) for record in records],
        "pid": tf.constant([record.pid for record in records], tf.int32),
    }
    without_camera = [record for record in records if record.camid is None]
    if without_camera and len(without_camera) < len(records):
        raise ValueError(
            f"{len(without_camera)} of {len(records)} records have no camera id (camid=None), "
            f"e.g. {without_camera[0].path!r}: give every record a camera id, or none."
        )
    if not without_camera:
        columns["camid"] = tf.constant([record.camid for record in records], tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices(columns)

    def load(item):
        image = transform.eval_transform(transform.resize(read_image(item["path"])))
        return {"image": image, **item}

    dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
