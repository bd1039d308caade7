"""Tests for keras_rollback.export: exported SavedModel / ONNX features vs `extract_features`."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_rollback import LayerwiseSGD
from keras_rollback.data import ImageTransform
from keras_rollback.data import ReIDRecord
from keras_rollback.data import make_eval_dataset
from keras_rollback.evaluation import extract_features
from keras_rollback.export import export_feature_extractor
from keras_rollback.export import read_contract
from keras_rollback.models import build_feature_model
from keras_rollback.models import build_reid_model
from keras_rollback.models import keras_hub_resnet

IMAGE_SIZE = (32, 16)
# Raw image sizes: larger, smaller, odd aspect, and the training size itself.
RAW_SIZES = [(64, 32), (50, 27), IMAGE_SIZE, (96, 41)]


def trained_reid_model():
    """A tiny keras-hub ResNet ReID model after one LayerwiseSGD step on this backend."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub_resnet(
        "resnet18", input_shape=(*IMAGE_SIZE, 3), widths=(64, 8, 8, 8), blocks=(1, 1, 1, 1)
    )
    model = build_reid_model(3, backbone, input_shape=(*IMAGE_SIZE, 3), bottleneck_units=8)
    model.compile(
        optimizer=LayerwiseSGD(learning_rate=0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, *IMAGE_SIZE, 3)).astype("float32")
    model.fit(images, np.arange(6) % 3, batch_size=6, epochs=1, verbose=0)
    return model


def write_images(folder):
    rng = np.random.default_rng(1)
    records, raw = [], []
    for index, (height, width) in enumerate(RAW_SIZES):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = os.path.join(folder, f"{index}.png")
        Image.fromarray(image).save(path)
        records.append(ReIDRecord(path, index, 0))
        raw.append(image)
    return records, raw


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model trained on this backend, its library features and both exports."""
    folder = tmp_path_factory.mktemp("export")
    model = trained_reid_model()
    records, raw = write_images(str(folder))
    library = extract_features(
        build_feature_model(model),
        make_eval_dataset(records, transform=ImageTransform(IMAGE_SIZE), batch_size=3),
        verbose=0,
    )["features"]
    saved_model = export_feature_extractor(model, folder / "saved_model", preprocessing="torch")
    onnx_file = export_feature_extractor(
        model, folder / "features.onnx", format="onnx", preprocessing="torch"
    )
    return {
        "model": model,
        "raw": raw,
        "library": library,
        "saved_model": saved_model,
        "onnx": onnx_file,
    }


def test_saved_model_features_equal_library_features_on_images_of_any_size(exported):
    serve = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    features = np.concatenate(
        [serve(images=tf.constant(image[None]))["features"].numpy() for image in exported["raw"]]
    )
    difference = np.abs(features - exported["library"]).max()
    print(f"{keras.backend.backend()} tf_saved_model max |difference| = {difference:.3g}")
    assert difference <= 1e-5


def test_saved_model_fed_pil_decoded_real_jpegs_equals_library_features(exported, mini_market1501):
    """A server decoding with PIL (as the authors' pipeline) gets the evaluation's features."""
    paths = sorted((mini_market1501 / "query").glob("*.jpg"))
    records = [ReIDRecord(str(path), index, 0) for index, path in enumerate(paths)]
    library = extract_features(
        build_feature_model(exported["model"]),
        make_eval_dataset(records, transform=ImageTransform(IMAGE_SIZE), batch_size=8),
        verbose=0,
    )["features"]
    serve = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    features = []
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        features.append(serve(images=tf.constant(pixels[None]))["features"].numpy())
    difference = np.abs(np.concatenate(features) - library).max()
    print(f"{keras.backend.backend()} PIL-decoded JPEGs, max |difference| = {difference:.3g}")
    assert difference <= 1e-5


def test_saved_model_takes_a_batch_at_training_size(exported):
    serve = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    batch = np.stack([exported["raw"][2], exported["raw"][2]])
    features = serve(images=tf.constant(batch))["features"].numpy()
    np.testing.assert_allclose(features, exported["library"][[2, 2]], atol=1e-5)


def test_onnx_features_equal_library_features(exported):
    import onnxruntime

    session = onnxruntime.InferenceSession(exported["onnx"])
    transform = ImageTransform(image_size=IMAGE_SIZE)
    batch = np.stack(
        [transform.resize(image).numpy().astype(np.uint8) for image in exported["raw"]]
    )
    (features,) = session.run(["features"], {"images": batch})
    difference = np.abs(features - exported["library"]).max()
    print(f"{keras.backend.backend()} onnx max |difference| = {difference:.3g}")
    assert difference <= 1e-5
    assert read_contract(exported["onnx"])["input_dtype"] == "uint8"


def test_normalised_float_input_is_refused_not_normalised_twice(exported):
    import onnxruntime

    normalised = np.zeros((1, *IMAGE_SIZE, 3), np.float32)
    serve = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serve(images=tf.constant(normalised))
    session = onnxruntime.InferenceSession(exported["onnx"])
    with pytest.raises(Exception, match=r"(?i)type"):
        session.run(None, {"images": normalised})


def test_channels_first_batch_is_refused(exported):
    import onnxruntime

    channels_first = np.zeros((1, 3, *IMAGE_SIZE), np.uint8)
    session = onnxruntime.InferenceSession(exported["onnx"])
    with pytest.raises(Exception, match=r"(?i)dimension"):
        session.run(None, {"images": channels_first})
    serve = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"channels-last RGB uint8"):
        serve(images=tf.constant(channels_first))


def test_model_that_normalises_itself_needs_preprocessing_none(tmp_path):
    inputs = keras.Input((*IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale_pixels")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, x)
    with pytest.raises(ValueError, match=r"scale_pixels.*twice"):
        export_feature_extractor(model, tmp_path / "m", preprocessing="torch")


def test_channels_first_model_and_bad_arguments_are_clear_errors(tmp_path):
    inputs = keras.Input((3, *IMAGE_SIZE))
    model = keras.Model(inputs, keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match=r"channels-last RGB images \[B, H, W, 3\]"):
        export_feature_extractor(model, tmp_path / "m", preprocessing="torch")
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(ValueError, match="image_size"):
        export_feature_extractor(model, tmp_path / "m", preprocessing="torch")
    with pytest.raises(ValueError, match="format='tflite'"):
        export_feature_extractor(model, tmp_path / "m", format="tflite", preprocessing="torch")
    with pytest.raises(ValueError, match="preprocessing='imagenet'"):
        export_feature_extractor(
            model, tmp_path / "m", preprocessing="imagenet", image_size=IMAGE_SIZE
        )


def test_command_line_exports_a_saved_model_file(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((*IMAGE_SIZE, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    model.save(tmp_path / "model.keras")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_rollback.export",
            f"--model={tmp_path / 'model.keras'}",
            f"--output={tmp_path / 'features.onnx'}",
            "--format=onnx",
            "--preprocessing=torch",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    contract = read_contract(tmp_path / "features.onnx")
    assert contract["input_shape"] == [None, *IMAGE_SIZE, 3]
    assert contract["feature_dim"] == 4
