"""Tests for keras_rollback.data.identity_sampler: P x K batches, seeded by (seed, epoch)."""

import collections

import numpy as np
import pytest
from PIL import Image

from keras_rollback.data import ImageTransform
from keras_rollback.data import ReIDRecord
from keras_rollback.data import identity_batch_indices
from keras_rollback.data import make_identity_train_dataset


def test_each_batch_holds_p_identities_with_k_images():
    pids = [0] * 7 + [1] * 2 + [2] * 5 + [3] * 4 + [4] * 9
    batches = identity_batch_indices(pids, 3, 4, np.random.default_rng(0))
    assert batches
    for batch in batches:
        counts = collections.Counter(pids[i] for i in batch)
        assert len(counts) == 3 and set(counts.values()) == {4}
    # Identity 1 has 2 images: drawn with replacement up to K.
    used = np.concatenate(batches)
    assert len(set(used.tolist())) <= len(pids)


def records(folder, pids=(0, 1, 2, 3), per_identity=3):
    rng = np.random.default_rng(0)
    out = []
    for pid in pids:
        for i in range(per_identity):
            path = folder / f"{pid}_{i}.png"
            Image.fromarray(rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)).save(path)
            out.append(ReIDRecord(str(path), pid, 0))
    return out


def test_dataset_batches_and_resuming_at_an_epoch(tmp_path):
    data = records(tmp_path)
    options = dict(
        identities_per_batch=2,
        images_per_identity=2,
        transform=ImageTransform(image_size=(8, 4)),
        seed=3,
    )
    dataset, steps = make_identity_train_dataset(data, **options)
    assert steps == 3  # 12 images // (2 x 2)
    batches = [(images.numpy(), labels.numpy()) for images, labels in dataset.take(3 * steps)]
    for _, labels in batches:
        assert len(labels) == 4 and len(set(labels.tolist())) == 2
        assert sorted(collections.Counter(labels.tolist()).values()) == [2, 2]
    resumed, _ = make_identity_train_dataset(data, start_epoch=2, **options)
    # Epoch 2 of a resumed stream is epoch 2 of the uninterrupted one, augmentations included.
    for (images, labels), (expected_images, expected_labels) in zip(
        resumed.take(steps), batches[2 * steps :]
    ):
        np.testing.assert_array_equal(labels.numpy(), expected_labels)
        np.testing.assert_array_equal(images.numpy(), expected_images)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(batches, batches[steps:]))


def test_too_few_identities_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="at least identities_per_batch=8"):
        make_identity_train_dataset(
            records(tmp_path), identities_per_batch=8, transform=ImageTransform(image_size=(8, 4))
        )
    with pytest.raises(ValueError, match="images_per_identity=1"):
        make_identity_train_dataset(records(tmp_path), images_per_identity=1)


def test_transform_gives_the_batches_the_deprecated_keywords_gave(tmp_path):
    data = records(tmp_path)
    sampling = dict(identities_per_batch=2, images_per_identity=2, seed=3, start_epoch=1)
    options = dict(image_size=(8, 4), preprocessing="caffe", random_erasing_probability=0.5)
    with pytest.warns(DeprecationWarning) as warned:
        old, old_steps = make_identity_train_dataset(
            data, random_crop_padding=1, **sampling, **options
        )
    assert [str(w.message) for w in warned if "make_identity" in str(w.message)] == [
        "make_identity_train_dataset(image_size=(8, 4), preprocessing='caffe', "
        "random_crop_padding=1, random_erasing_probability=0.5) is deprecated and will be "
        "removed in the next release: pass transform=ImageTransform(image_size=(8, 4), "
        "preprocessing='caffe', random_crop_padding=1, random_erasing_probability=0.5) instead."
    ]
    new, new_steps = make_identity_train_dataset(
        data, transform=ImageTransform(random_crop_padding=1, **options), **sampling
    )
    assert old_steps == new_steps == 3
    for (old_images, old_labels), (new_images, new_labels) in zip(
        old.take(2 * old_steps), new.take(2 * new_steps)
    ):
        np.testing.assert_array_equal(old_labels.numpy(), new_labels.numpy())
        np.testing.assert_array_equal(old_images.numpy(), new_images.numpy())


def test_transform_and_a_deprecated_keyword_raise_naming_both(tmp_path):
    transform = ImageTransform(image_size=(8, 4))
    with pytest.raises(ValueError, match=r"both transform= and .*random_crop_padding") as error:
        make_identity_train_dataset(records(tmp_path), transform=transform, random_crop_padding=2)
    assert "Received: transform=ImageTransform(image_size=(8, 4)" in str(error.value)
    with pytest.raises(ValueError, match=r"Received: interpolation='cubic'"):
        make_identity_train_dataset(records(tmp_path), interpolation="cubic")
    with pytest.raises(ValueError, match=r"Received: transform=\(8, 4\)"):
        make_identity_train_dataset(records(tmp_path), transform=(8, 4))
