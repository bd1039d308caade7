"""Identity-balanced training batches (P identities x K images), for triplet losses."""

import collections

import numpy as np
import tensorflow as tf

from keras_rollback.data import image_files
from keras_rollback.data import pipeline


def identity_batch_indices(pids, identities_per_batch, images_per_identity, rng):
    """One pass of the identity sampler: batches of P identities x K images each.

    torchreid's `RandomIdentitySampler` (and the Bag of Tricks code): every identity's
    images are shuffled (drawn with replacement up to K when it has fewer) and cut into
    groups of K; batches take one group from each of P identities drawn at random among
    those with groups left, until fewer than P remain.

    Args:
        pids: sequence of int. Identity of each record.
        identities_per_batch: int P.
        images_per_identity: int K.
        rng: `numpy.random.Generator`.

    Returns:
        A list of int64 arrays of P * K record indices, identity by identity.
    """
    by_pid = collections.defaultdict(list)
    for index, pid in enumerate(pids):
        by_pid[pid].append(index)
    groups = {}
    for pid in sorted(by_pid):
        indices = np.asarray(by_pid[pid], np.int64)
        if len(indices) < images_per_identity:
            indices = rng.choice(indices, images_per_identity, replace=True)
        indices = rng.permutation(indices)
        count = len(indices) // images_per_identity
        groups[pid] = [
            indices[i * images_per_identity : (i + 1) * images_per_identity] for i in range(count)
        ]
    batches = []
    available = [pid for pid in sorted(groups) if groups[pid]]
    while len(available) >= identities_per_batch:
        chosen = rng.choice(len(available), identities_per_batch, replace=False)
        batches.append(np.concatenate([groups[available[i]].pop() for i in sorted(chosen)]))
        available = [pid for pid in available if groups[pid]]
    return batches


def make_identity_train_dataset(
    records,
    *,
    identities_per_batch=16,
    images_per_identity=4,
    transform=pipeline.DEFAULT_TRANSFORM,
    seed=0,
    image_check="header",
    on_bad_image="raise",
    num_parallel_calls=tf.data.AUTOTUNE,
    start_epoch=0,
    **legacy_kwargs,
):
    """Training batches of P identities x K images, for the batch-hard triplet loss.

    An epoch is `len(records) // (P * K)` batches (about one pass over the images, as in
    torchreid); epoch `e`'s batches and augmentations depend only on `(seed, e)`, drawn by
    `identity_batch_indices` passes from a generator seeded with them, so a run resumed at
    `start_epoch` sees what an uninterrupted run would have seen. The stream is endless:
    train with `model.fit(dataset, steps_per_epoch=steps)`.

    Example:

    >>> train, steps = make_identity_train_dataset(dataset.train, seed=0)  # doctest: +SKIP
    >>> model.fit(train, epochs=120, steps_per_epoch=steps)  # doctest: +SKIP

    Args:
        records: sequence of `(path, label, ...)` records (`ReIDDataset.train`).
        identities_per_batch: int P >= 2. Defaults to `16` (Bag of Tricks).
        images_per_identity: int K >= 2. Defaults to `4`.
        transform: `ImageTransform`. Resize, augmentation and normalisation. Defaults to
            `ImageTransform()`, as `make_train_dataset` (`pipeline.DEFAULT_TRANSFORM`).
        image_check, on_bad_image, num_parallel_calls: As in `make_train_dataset`.
        seed: int. Seed of the sampling and the augmentations. Defaults to `0`.
        start_epoch: int >= 0. First epoch of the stream. Defaults to `0`.
        **legacy_kwargs: Deprecated, removed in the next release: the fields of
            `ImageTransform` as separate keyword arguments, with a `DeprecationWarning`.

    Returns:
        `(dataset, steps_per_epoch)`: a `tf.data.Dataset` of float32 `[P*K, H, W, 3]`
        images and int32 `[P*K]` labels, and the batches per epoch.

    Raises:
        ValueError: if an argument is invalid, the records hold fewer than P identities, or
            `transform` is given together with a deprecated keyword argument.
    """
    transform = pipeline.transform_from_legacy_kwargs(
        transform,
        legacy_kwargs,
        builder_name="make_identity_train_dataset",
        default=pipeline.DEFAULT_TRANSFORM,
    )
    for name, value in (
        ("identities_per_batch", identities_per_batch),
        ("images_per_identity", images_per_identity),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"Received: {name}={value!r}. Expected an integer >= 2.")
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
        raise ValueError(f"Received: start_epoch={start_epoch!r}. Expected an integer >= 0.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"Received: seed={seed!r}. Expected an integer.")
    records = pipeline.check_records(records, "records")
    records = image_files.drop_bad_images(records, check=image_check, on_bad_image=on_bad_image)
    pids = [record[1] for record in records]
    if len(set(pids)) < identities_per_batch:
        raise ValueError(
            f"The identity sampler needs at least identities_per_batch={identities_per_batch} "
            f"identities; the records hold {len(set(pids))}."
        )
    batch_size = identities_per_batch * images_per_identity
    steps = max(1, len(records) // batch_size)

    def epoch_indices(epoch):
        rng = np.random.default_rng([seed, int(epoch)])
        batches: list = []
        while len(batches) < steps:
            batches += identity_batch_indices(pids, identities_per_batch, images_per_identity, rng)
        return np.concatenate(batches[:steps])

    def one_epoch(epoch):
        indices = tf.numpy_function(epoch_indices, [epoch], tf.int64)
        indices.set_shape([steps * batch_size])
        augment_seed = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), epoch]), 1
        )[0]
        randoms = tf.random.stateless_uniform(
            [steps * batch_size], augment_seed, minval=None, maxval=None, dtype=tf.int64
        )
        return tf.data.Dataset.from_tensor_slices(
            ((tf.gather(paths, indices), tf.gather(labels, indices)), randoms)
        )

    paths = tf.constant([str(record[0]) for record in records])
    labels = tf.constant(pids, tf.int32)
    stream = tf.data.Dataset.range(start_epoch, 2**62).flat_map(one_epoch)
    dataset = pipeline.make_image_label_batches(
        stream.map(lambda item, random: item),
        transform,
        batch_size=batch_size,
        seed=seed,
        drop_remainder=True,
        num_parallel_calls=num_parallel_calls,
        decode=pipeline.read_image,
        randoms=stream.map(lambda item, random: random),
    )
    return dataset, steps
