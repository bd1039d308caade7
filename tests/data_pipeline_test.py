"""Tests for keras_rollback.data.pipeline: the tf.data training and evaluation pipelines."""

import dataclasses
import pathlib
import warnings

import keras
import numpy as np
import pytest

from keras_rollback.data import image_files
from keras_rollback.data import market1501
from keras_rollback.data import pipeline
from keras_rollback.data import synthetic

SIZE = (32, 16)


def transform(**kwargs):
    """An `ImageTransform` at the tests' size."""
    return pipeline.ImageTransform(image_size=SIZE, **kwargs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """5 training ids x 2 cameras x 2 images = 20 training images of 32x16 pixels."""
    root = synthetic.write_synthetic_market1501(
        tmp_path_factory.mktemp("tiny"),
        num_train_identities=5,
        num_test_identities=3,
        num_cameras=2,
        images_per_camera=2,
        num_distractors=1,
        num_junk=1,
        image_size=SIZE,
        seed=3,
    )
    return market1501.read_market1501(root)


def collect(dataset):
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), batches


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_normalisation_matches_keras_applications(mode):
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 4, 3, 3)).astype(np.float32)
    # keras' preprocess_input runs in NumPy for NumPy input, whatever the backend.
    expected = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    np.testing.assert_allclose(
        pipeline.normalize_images(pixels, mode).numpy(), expected, rtol=1e-5, atol=1e-4
    )


def test_torch_normalisation_by_hand():
    pixel = np.array([[[255.0, 0.0, 127.5]]], np.float32)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    np.testing.assert_allclose(
        pipeline.normalize_images(pixel, "torch").numpy()[0, 0], expected, rtol=1e-6
    )
    np.testing.assert_array_equal(pipeline.normalize_images(pixel, "none").numpy(), pixel)


def test_train_batches_shapes_labels_and_partial_last_batch(tiny):
    dataset = pipeline.make_train_dataset(tiny.train, transform=transform(), batch_size=8, seed=0)
    assert dataset.element_spec[0].shape.as_list() == [None, 32, 16, 3]
    images, labels, batches = collect(dataset)
    assert [len(b[1]) for b in batches] == [8, 8, 4]  # Last partial batch kept.
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert sorted(labels) == sorted(r.pid for r in tiny.train)
    dropped = pipeline.make_train_dataset(
        tiny.train, transform=transform(), batch_size=8, drop_remainder=True
    )
    assert [len(b[1]) for b in dropped.as_numpy_iterator()] == [8, 8]


def test_default_size_is_288x144(mini_market1501):
    dataset = market1501.read_market1501(mini_market1501)
    images, labels = next(iter(pipeline.make_train_dataset(dataset.train, seed=0)))
    assert images.shape == (32, 288, 144, 3) and labels.shape == (32,)


def test_flip_is_the_only_default_augmentation(tiny):
    train = pipeline.make_train_dataset(
        tiny.train, transform=transform(preprocessing="none"), shuffle=False, seed=1
    )
    evaluation = pipeline.make_eval_dataset(tiny.train, transform=transform(preprocessing="none"))
    augmented, _, _ = collect(train)
    plain = np.concatenate([b["image"] for b in evaluation.as_numpy_iterator()])
    same = [np.array_equal(a, p) for a, p in zip(augmented, plain)]
    mirrored = [np.array_equal(a, p[:, ::-1]) for a, p in zip(augmented, plain)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert any(same) and any(mirrored)


def test_seed_reproduces_order_and_augmentation_and_epochs_differ(tiny):
    def two_epochs():
        dataset = pipeline.make_train_dataset(
            tiny.train,
            transform=transform(random_crop_padding=2, random_erasing_probability=0.5),
            seed=7,
        )
        return [collect(dataset)[:2] for _ in range(2)]

    first, second = two_epochs(), two_epochs()
    for (images_a, labels_a), (images_b, labels_b) in zip(first, second):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(first[0][1], first[1][1])  # Reshuffled each epoch.


def test_random_erasing_sets_a_rectangle_to_zero(tiny):
    dataset = pipeline.make_train_dataset(
        tiny.train,
        transform=transform(random_flip=False, random_erasing_probability=1.0),
        shuffle=False,
        seed=0,
    )
    images, _, _ = collect(dataset)
    for image in images:
        zero_rows, zero_cols = np.nonzero(np.all(image == 0.0, axis=-1))
        height = zero_rows.max() - zero_rows.min() + 1
        width = zero_cols.max() - zero_cols.min() + 1
        assert len(zero_rows) == height * width  # One filled rectangle.
        assert 0.02 * 32 * 16 * 0.5 <= height * width <= 0.4 * 32 * 16 * 1.5


def test_random_crop_padding_shifts_content(tiny):
    dataset = pipeline.make_train_dataset(
        tiny.train,
        transform=transform(preprocessing="none", random_flip=False, random_crop_padding=4),
        shuffle=False,
        seed=0,
    )
    images, _, _ = collect(dataset)
    evaluation = pipeline.make_eval_dataset(tiny.train, transform=transform(preprocessing="none"))
    plain = np.concatenate([b["image"] for b in evaluation.as_numpy_iterator()])
    assert images.shape == plain.shape
    assert not np.array_equal(images, plain)
    assert np.any(np.all(images == 0.0, axis=(2, 3)))  # Some images show a zero-padded row.


def test_bicubic_resize_matches_pil(mini_market1501):
    pil = pytest.importorskip("PIL.Image")
    path = sorted((mini_market1501 / "query").iterdir())[0]
    expected = np.asarray(pil.open(path).convert("RGB").resize((144, 288), pil.BICUBIC), np.float32)
    ours = pipeline.ImageTransform().resize(pipeline.read_image(str(path))).numpy()
    assert np.abs(ours - expected).mean() < 1.5  # Grey levels: the resize kernels differ slightly.


def test_eval_dataset_keeps_order_and_metadata(tiny):
    dataset = pipeline.make_eval_dataset(tiny.gallery, transform=transform(), batch_size=4)
    batches = list(dataset.as_numpy_iterator())
    assert set(batches[0]) == {"image", "pid", "camid", "path"}
    assert batches[0]["image"].dtype == np.float32 and batches[0]["image"].shape == (4, 32, 16, 3)
    assert batches[0]["pid"].dtype == np.int32 and batches[0]["camid"].dtype == np.int32
    assert [p.decode() for b in batches for p in b["path"]] == [r.path for r in tiny.gallery]
    assert [int(p) for b in batches for p in b["pid"]] == [r.pid for r in tiny.gallery]
    assert [int(c) for b in batches for c in b["camid"]] == [r.camid for r in tiny.gallery]
    again = list(dataset.as_numpy_iterator())
    np.testing.assert_array_equal(batches[-1]["image"], again[-1]["image"])


def test_bad_image_fails_at_build_time_with_its_path(tiny, tmp_path):
    broken = tmp_path / "0001_c1s1_000001_01.jpg"
    broken.write_bytes(pathlib.Path(tiny.train[0].path).read_bytes()[:100])
    records = tiny.train[1:4] + [tiny.train[0]._replace(path=str(broken))]
    with pytest.raises(
        image_files.BadImageError, match=r"0001_c1s1_000001_01\.jpg: truncated JPEG"
    ):
        pipeline.make_train_dataset(records, transform=transform())
    with pytest.raises(image_files.BadImageError, match=r"0001_c1s1_000001_01\.jpg"):
        pipeline.make_eval_dataset(records, transform=transform())
    kept = pipeline.make_train_dataset(
        records, transform=transform(), on_bad_image="skip", batch_size=8
    )
    assert len(next(iter(kept))[1]) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "Received: batch_size=0"),
        ({"seed": "1"}, "Received: seed='1'"),
        ({"num_parallel_calls": 0}, "Received: num_parallel_calls=0"),
        ({"transform": {"image_size": SIZE}}, r"Received: transform=\{'image_size'"),
    ],
)
def test_invalid_arguments_are_echoed(tiny, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline.make_train_dataset(tiny.train, **kwargs)


BAD_TRANSFORMS = [
    ({"image_size": (0, 16)}, r"Received: image_size=\(0, 16\)"),
    ({"image_size": (32.0, 16)}, r"Received: image_size=\(32.0, 16\)"),
    ({"preprocessing": "bgr"}, "Received: preprocessing='bgr'"),
    ({"interpolation": "cubic"}, "Received: interpolation='cubic'"),
    ({"random_erasing_probability": 1.5}, "Received: random_erasing_probability=1.5"),
    ({"random_crop_padding": -1}, "Received: random_crop_padding=-1"),
    ({"random_flip": 1}, "Received: random_flip=1"),
]


@pytest.mark.parametrize("kwargs, message", BAD_TRANSFORMS)
def test_invalid_image_transform_values_are_echoed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline.ImageTransform(**kwargs)


@pytest.mark.parametrize("kwargs, message", BAD_TRANSFORMS)
def test_invalid_deprecated_keyword_values_are_echoed(tiny, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline.make_train_dataset(tiny.train, **kwargs)


def test_image_transform_is_frozen_and_defaults_to_the_authors_pipeline():
    default = pipeline.ImageTransform()
    assert default == pipeline.DEFAULT_TRANSFORM
    assert (default.image_size, default.preprocessing, default.interpolation) == (
        (288, 144),
        "torch",
        "bicubic",
    )
    assert default.random_flip and not default.random_crop_padding
    assert not default.random_erasing_probability
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.image_size = SIZE  # type: ignore[misc]
    assert pipeline.ImageTransform(image_size=[32, 16]).image_size == SIZE
    augmented = transform(random_crop_padding=2, random_erasing_probability=0.5)
    assert augmented.without_augmentation() == transform(random_flip=False)


def _images(dataset):
    return [
        batch["image"] if isinstance(batch, dict) else batch[0]
        for batch in dataset.as_numpy_iterator()
    ]


def _labels(dataset):
    return [batch[1] for batch in dataset.as_numpy_iterator()]


def test_transform_gives_the_batches_the_deprecated_keywords_gave(tiny):
    options = {"image_size": SIZE, "preprocessing": "caffe", "interpolation": "bilinear"}
    augmentation = {"random_crop_padding": 3, "random_erasing_probability": 0.5}
    with pytest.warns(DeprecationWarning):
        old_train = pipeline.make_train_dataset(
            tiny.train, batch_size=8, seed=11, **options, **augmentation
        )
    new_train = pipeline.make_train_dataset(
        tiny.train,
        transform=pipeline.ImageTransform(**options, **augmentation),
        batch_size=8,
        seed=11,
    )
    for old, new in zip(_images(old_train), _images(new_train), strict=True):
        np.testing.assert_array_equal(old, new)
    for old, new in zip(_labels(old_train), _labels(new_train), strict=True):
        np.testing.assert_array_equal(old, new)
    with pytest.warns(DeprecationWarning):
        old_eval = pipeline.make_eval_dataset(tiny.query, batch_size=4, **options)
    # The training transform as it is: make_eval_dataset ignores its augmentation.
    new_eval = pipeline.make_eval_dataset(
        tiny.query, transform=pipeline.ImageTransform(**options, **augmentation), batch_size=4
    )
    for old, new in zip(_images(old_eval), _images(new_eval), strict=True):
        np.testing.assert_array_equal(old, new)


def test_deprecated_keywords_warn_at_the_caller_naming_the_replacement(tiny):
    with pytest.warns(DeprecationWarning) as records:
        pipeline.make_train_dataset(tiny.train, image_size=SIZE, random_flip=False)
    (record,) = [r for r in records if "make_train_dataset" in str(r.message)]
    assert record.filename == __file__  # stacklevel=2 from the builder: the caller's line.
    assert str(record.message) == (
        "make_train_dataset(image_size=(32, 16), random_flip=False) is deprecated and will be "
        "removed in the next release: pass "
        "transform=ImageTransform(image_size=(32, 16), random_flip=False) instead."
    )
    with pytest.warns(DeprecationWarning, match=r"transform=ImageTransform\(preprocessing='tf'\)"):
        pipeline.make_eval_dataset(tiny.query, preprocessing="tf")


def test_no_warning_without_the_deprecated_keywords(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        pipeline.make_train_dataset(tiny.train, transform=transform(), seed=0)
        pipeline.make_train_dataset(tiny.train, seed=0)
        pipeline.make_eval_dataset(tiny.query, transform=transform())


@pytest.mark.parametrize("builder", ["make_train_dataset", "make_eval_dataset"])
def test_transform_and_a_deprecated_keyword_together_raise_naming_both(tiny, builder):
    with pytest.raises(ValueError, match=r"both transform= and .* image_size") as error:
        getattr(pipeline, builder)(tiny.train, transform=transform(), image_size=SIZE)
    assert "Received: transform=ImageTransform(image_size=(32, 16)" in str(error.value)
    assert "image_size=(32, 16)." in str(error.value)
    # Even a transform equal to the default is a second source of settings.
    with pytest.raises(ValueError, match="preprocessing"):
        getattr(pipeline, builder)(
            tiny.train, transform=pipeline.ImageTransform(), preprocessing="tf"
        )


def test_unknown_keywords_are_type_errors(tiny):
    with pytest.raises(TypeError, match=r"make_train_dataset.*'image_sise'"):
        pipeline.make_train_dataset(tiny.train, image_sise=SIZE)
    # The evaluation pipeline never took augmentation options.
    with pytest.raises(TypeError, match=r"make_eval_dataset.*'random_flip'"):
        pipeline.make_eval_dataset(tiny.query, random_flip=False)


def test_negative_labels_and_empty_records_are_rejected(tiny):
    with pytest.raises(ValueError, match="negative label"):
        pipeline.make_train_dataset([tiny.train[0]._replace(pid=-1)], transform=transform())
    with pytest.raises(ValueError, match="records is empty"):
        pipeline.make_eval_dataset([], transform=transform())


def test_model_fit_and_predict_on_the_current_backend(tiny):
    num_classes = tiny.num_train_pids
    model = keras.Sequential(
        [
            keras.Input((*SIZE, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),
        ]
    )
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    train = pipeline.make_train_dataset(tiny.train, transform=transform(), batch_size=8, seed=0)
    history = model.fit(train, shuffle=False, verbose=0)  # The dataset shuffles itself.
    assert np.isfinite(history.history["loss"][0])
    images = pipeline.make_eval_dataset(tiny.query, transform=transform(), batch_size=4).map(
        lambda b: b["image"]
    )
    assert model.predict(images, verbose=0).shape == (len(tiny.query), num_classes)


def test_epoch_keyed_dataset_resumes_with_the_same_batches(tiny):
    options = {"transform": transform(), "batch_size": 8, "seed": 5}
    steps = pipeline.steps_per_epoch(len(tiny.train), 8)
    assert steps == 3  # 20 images: 8 + 8 + 4, the partial batch kept
    from_start = list(
        pipeline.make_train_dataset(tiny.train, start_epoch=0, **options).take(3 * steps)
    )
    resumed = list(pipeline.make_train_dataset(tiny.train, start_epoch=2, **options).take(steps))
    for (images, labels), (expected_images, expected_labels) in zip(
        resumed, from_start[2 * steps :]
    ):
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_array_equal(images, expected_images)
    # Epochs differ in order, and each epoch is a permutation of the whole training set.
    epoch_labels = [
        np.concatenate([b[1] for b in from_start[e * steps : (e + 1) * steps]]) for e in range(2)
    ]
    assert not np.array_equal(epoch_labels[0], epoch_labels[1])
    assert sorted(epoch_labels[0]) == sorted(r.pid for r in tiny.train)
    with pytest.raises(ValueError, match="start_epoch=0, seed=None"):
        pipeline.make_train_dataset(tiny.train, start_epoch=0, transform=transform())
