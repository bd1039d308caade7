"""Tests for keras_rollback.data.fine_grained: TFDS datasets (mocked) and FGVC-Aircraft."""

import numpy as np
import pytest
import tensorflow as tf

from keras_rollback.data import fine_grained
from keras_rollback.data import reid_dataset
from keras_rollback.data.pipeline import ImageTransform

tfds = pytest.importorskip("tensorflow_datasets")
SIZE = (24, 24)
TRANSFORM = ImageTransform(image_size=SIZE)
# The test split's exact pixels: no interpolation, no normalisation.
PLAIN = ImageTransform(image_size=SIZE, preprocessing="none", interpolation="nearest")


def batches(dataset):
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (images_a, labels_a), (images_b, labels_b) in zip(a, b):
        np.testing.assert_array_equal(labels_a, labels_b)
        np.testing.assert_array_equal(images_a, images_b)


@pytest.mark.parametrize("name, num_classes", [("caltech_birds2011", 200), ("food101", 101)])
def test_tfds_datasets_with_mock_data(name, num_classes):
    with tfds.testing.mock_data(num_examples=6):
        data = fine_grained.load_tfds_fine_grained(name, transform=TRANSFORM, batch_size=4, seed=0)
        train = list(data.train.as_numpy_iterator())
        test = list(data.test.as_numpy_iterator())
        test_again = list(data.test.as_numpy_iterator())
    for (images, labels), (images_again, labels_again) in zip(test, test_again):  # Fixed order.
        np.testing.assert_array_equal(labels, labels_again)
        np.testing.assert_array_equal(images, images_again)
    assert data.num_classes == num_classes and len(data.class_names) == num_classes
    assert [len(labels) for _, labels in train] == [4, 2]
    assert train[0][0].shape == (4, 24, 24, 3) and train[0][0].dtype == np.float32
    assert all(0 <= label < num_classes for _, labels in train + test for label in labels)


def test_tfds_transform_gives_the_batches_the_deprecated_keywords_gave():
    options = dict(image_size=SIZE, preprocessing="caffe", interpolation="bilinear")
    augmentation = dict(random_crop_padding=2, random_erasing_probability=0.5)
    with tfds.testing.mock_data(num_examples=6):
        with pytest.warns(DeprecationWarning, match="load_tfds_fine_grained"):
            old = fine_grained.load_tfds_fine_grained(
                "food101", batch_size=4, seed=0, **options, **augmentation
            )
        new = fine_grained.load_tfds_fine_grained(
            "food101",
            transform=ImageTransform(**options, **augmentation),
            batch_size=4,
            seed=0,
        )
        assert_same_batches(batches(old.train), batches(new.train))
        assert_same_batches(batches(old.test), batches(new.test))


def test_tfds_dataset_not_prepared_is_a_clear_error(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"caltech_birds2011 is not prepared.*download=True"
    ):
        fine_grained.load_tfds_fine_grained("caltech_birds2011", data_dir=str(tmp_path))


def test_unknown_tfds_name_is_echoed():
    with pytest.raises(ValueError, match=r"Received: name='fgvc_aircraft'.*load_fgvc_aircraft"):
        fine_grained.load_tfds_fine_grained("fgvc_aircraft")


@pytest.fixture
def aircraft(tmp_path):
    """3 variants; 4 trainval and 2 test images whose bottom 20 rows are a white banner."""
    root = tmp_path / "fgvc-aircraft-2013b"
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "variants.txt").write_text("707-320\nA300B4\nFalcon 2000\n")
    trainval = {
        "1000001": "707-320",
        "1000002": "Falcon 2000",
        "1000003": "A300B4",
        "1000004": "Falcon 2000",
    }
    test = {"2000001": "A300B4", "2000002": "707-320"}
    image = np.zeros((60, 40, 3), np.uint8)
    image[-20:] = 255
    jpeg = tf.io.encode_jpeg(image, quality=100).numpy()
    for split, entries in (("trainval", trainval), ("test", test)):
        lines = [f"{image_id} {variant}" for image_id, variant in entries.items()]
        (root / "data" / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
        for image_id in entries:
            (root / "data" / "images" / f"{image_id}.jpg").write_bytes(jpeg)
    return root


def test_read_fgvc_aircraft_lists(aircraft):
    train, test, names = fine_grained.read_fgvc_aircraft(aircraft)
    assert names == ("707-320", "A300B4", "Falcon 2000")
    assert [record.label for record in train] == [0, 2, 1, 2]  # Class names with spaces parse.
    assert [record.label for record in test] == [1, 0]
    assert train[0].path == str(aircraft / "data" / "images" / "1000001.jpg")


def test_load_fgvc_aircraft_removes_the_banner(aircraft):
    data = fine_grained.load_fgvc_aircraft(aircraft, transform=PLAIN, batch_size=8, seed=0)
    test_images, test_labels = next(iter(data.test))
    assert test_labels.numpy().tolist() == [1, 0]  # Test order is the list order.
    assert float(tf.reduce_max(test_images)) < 10  # Only the black part is left.
    _, train_labels = next(iter(data.train))
    assert sorted(train_labels.numpy().tolist()) == [0, 1, 2, 2]
    with_banner = fine_grained.load_fgvc_aircraft(aircraft, remove_banner=False, transform=PLAIN)
    assert float(tf.reduce_max(next(iter(with_banner.test))[0])) > 245


def test_fgvc_aircraft_transform_gives_the_batches_the_deprecated_keywords_gave(aircraft):
    options = dict(image_size=SIZE, preprocessing="tf", random_crop_padding=3)
    with pytest.warns(DeprecationWarning) as records:
        old = fine_grained.load_fgvc_aircraft(aircraft, batch_size=3, seed=4, **options)
    messages = [str(r.message) for r in records if "load_fgvc_aircraft" in str(r.message)]
    assert messages == [
        "load_fgvc_aircraft(image_size=(24, 24), preprocessing='tf', random_crop_padding=3) is "
        "deprecated and will be removed in the next release: pass transform="
        "ImageTransform(image_size=(24, 24), preprocessing='tf', random_crop_padding=3) instead."
    ]
    new = fine_grained.load_fgvc_aircraft(
        aircraft, transform=ImageTransform(**options), batch_size=3, seed=4
    )
    assert_same_batches(batches(old.train), batches(new.train))
    assert_same_batches(batches(old.test), batches(new.test))


def test_fine_grained_default_transform_is_224_and_named_in_the_warning(aircraft):
    assert ImageTransform(image_size=(224, 224)) == fine_grained.FINE_GRAINED_TRANSFORM
    # Only a changed field is given; the builder's 224x224 default stays in the replacement.
    with pytest.warns(DeprecationWarning, match=r"ImageTransform\(image_size=\(224, 224\), "):
        data = fine_grained.load_fgvc_aircraft(aircraft, preprocessing="none")
    assert data.test.element_spec[0].shape.as_list() == [None, 224, 224, 3]


def test_fine_grained_transform_and_a_deprecated_keyword_raise_naming_both(aircraft):
    with pytest.raises(ValueError, match=r"both transform= and .*random_flip"):
        fine_grained.load_fgvc_aircraft(aircraft, transform=TRANSFORM, random_flip=False)
    with pytest.raises(ValueError, match=r"both transform= and .*image_size"):
        fine_grained.load_tfds_fine_grained("food101", transform=TRANSFORM, image_size=SIZE)
    with pytest.raises(ValueError, match=r"Received: random_erasing_probability=-0\.1"):
        fine_grained.load_fgvc_aircraft(aircraft, random_erasing_probability=-0.1)


def test_aircraft_unknown_class_names_the_line(aircraft):
    (aircraft / "data" / "images_variant_test.txt").write_text(
        "2000001 A300B4\n2000002 Boeing 999\n"
    )
    with pytest.raises(ValueError, match=r"Line 2 of .*images_variant_test\.txt.*'Boeing 999'"):
        fine_grained.read_fgvc_aircraft(aircraft)


def test_aircraft_missing_files_name_layout(aircraft):
    (aircraft / "data" / "variants.txt").unlink()
    with pytest.raises(
        reid_dataset.DatasetLayoutError,
        match=r"missing \['data/variants.txt'\](.|\n)*images_variant_trainval",
    ):
        fine_grained.read_fgvc_aircraft(aircraft)


def test_aircraft_invalid_arguments_are_echoed(aircraft):
    with pytest.raises(ValueError, match="Received: annotation='model'"):
        fine_grained.read_fgvc_aircraft(aircraft, annotation="model")
    with pytest.raises(ValueError, match="Received: remove_banner='yes'"):
        fine_grained.load_fgvc_aircraft(aircraft, remove_banner="yes")
    with pytest.raises(ValueError, match="Received: shuffle_buffer_size=0"):
        fine_grained.load_tfds_fine_grained("food101", shuffle_buffer_size=0)
