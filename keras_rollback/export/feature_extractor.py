"""Exports a trained model as a deployable feature extractor: TF SavedModel or ONNX.

The exported graph computes exactly the evaluation feature of `extract_features` on images
prepared by `make_eval_dataset`: resize to the training size (the pipeline's own resize:
bicubic with antialiasing, rounded to integer levels), the weights' own normalisation, the
feature of the image plus that of its horizontal flip, L2 normalisation. It takes raw RGB
images, uint8 `[B, H, W, 3]` (channels last), so nothing in front of it may normalise them
again: a float input is refused by the serving signature instead of being normalised twice.

The graph is built with TensorFlow whatever backend trained the model: Keras weights are
backend-independent, so a model trained on JAX or PyTorch is saved to a `.keras` file and
rebuilt on the TensorFlow backend (in a child process when another backend is active).
"""

import json
import os
import tempfile

import keras
from absl import logging

from keras_rollback.data import pipeline
from keras_rollback.evaluation import model_evaluation
from keras_rollback.export.on_tensorflow_backend import call_on_tensorflow_backend
from keras_rollback.user_error import UserError

FORMATS = ("tf_saved_model", "onnx")
METADATA_FILE = "feature_extractor.json"
INPUT_NAME = "images"
OUTPUT_NAME = "features"
# Layers that normalise their input inside the model: exporting with a `preprocessing`
# besides them would normalise the images twice.
NORMALIZING_LAYERS = (keras.layers.Rescaling, keras.layers.Normalization)


def export_feature_extractor(
    model,
    path,
    *,
    format="tf_saved_model",
    preprocessing,
    image_size=None,
    interpolation="bicubic",
    flip=True,
):
    """Exports the evaluation feature of `model` as a standalone serving artifact.

    The artifact takes raw RGB images, uint8 `[B, H, W, 3]`, and returns the L2-normalised
    features `[B, D]` that `extract_features(feature_model, make_eval_dataset(...))` gives
    for the same images (equal to about 1e-6). `"tf_saved_model"` takes images of any size
    (resized inside the graph, as the pipeline does) through its `serving_default`
    signature; `"onnx"` takes a batch at the training size (`image_size`), since ONNX has
    no equivalent of TensorFlow's antialiased resize: resize first with
    `ImageTransform(image_size=...).resize`. A `feature_extractor.json` beside the
    artifact (ONNX: also its metadata) records the input contract.

    Example:

    ```python
    model = build_reid_model(751, "resnet50", weights="resnet50-0676ba61.pth")
    model.fit(...)
    export_feature_extractor(model, "reid_features", preprocessing="torch")
    serve = tf.saved_model.load("reid_features").signatures["serving_default"]
    features = serve(images=tf.constant(uint8_images))["features"]
    ```

    Args:
        model: `keras.Model`. A `build_reid_model` model (its pooled backbone feature is
            exported), a `build_bnneck_model` model (its feature after the BNNeck) or any model mapping channels-last RGB images `[B, H, W, 3]` to
            features.
        path: path-like. The SavedModel folder, or the `.onnx` file.
        format: String. `"tf_saved_model"` or `"onnx"`. Defaults to `"tf_saved_model"`.
        preprocessing: String. The normalisation the weights expect, see
            `normalize_images` and `backbone_preprocessing` (`"torch"`, `"caffe"`, `"tf"`,
            or `"none"` when the model normalises its input itself).
        image_size: Tuple `(height, width)` or None. The training image size. Defaults to
            `None`: the model's input size.
        interpolation: String. The pipeline's resize method. Defaults to `"bicubic"`.
        flip: Bool. Add the feature of the flipped image (as `extract_features`).
            Defaults to `True`.

    Returns:
        The path of the artifact (str).

    Raises:
        ExportTargetError: if `path` cannot receive the artifact (see `check_export_target`).
        ValueError: if an argument is invalid, the model's input is not channels-last RGB,
            or the model normalises its input itself while `preprocessing` is not `"none"`.
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown format. Received: format={format!r}. Expected one of {FORMATS}.")
    if not isinstance(flip, bool):
        raise ValueError(f"Expected a bool flip. Received: flip={flip!r}.")
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a keras.Model. Received: model={model!r}.")
    feature_model = model_evaluation.evaluation_feature_model(model)
    input_size = _check_input_layout(feature_model)
    image_size = tuple(image_size) if image_size is not None else input_size
    if image_size is None or None in image_size:
        raise ValueError(
            f"The model {model.name!r} takes images of any size: pass image_size=(height, width), "
            "the size it was trained at."
        )
    # Validates image_size, preprocessing and interpolation with the pipeline's own rules.
    pipeline.ImageTransform(
        image_size=image_size, preprocessing=preprocessing, interpolation=interpolation
    )
    _check_single_normalisation(feature_model, preprocessing)
    contract = {
        "format": format,
        "input": INPUT_NAME,
        "input_dtype": "uint8",
        "input_layout": "NHWC RGB, values 0..255 (not normalised)",
        "input_shape": [None, None, None, 3]
        if format == "tf_saved_model"
        else [None, *image_size, 3],
        "output": OUTPUT_NAME,
        "feature_dim": int(_feature_dim(feature_model)),
        "image_size": list(image_size),
        "preprocessing": preprocessing,
        "interpolation": interpolation,
        "flip": flip,
        "l2_normalized": True,
        "keras_backend_trained": keras.backend.backend(),
    }
    path = os.fspath(path)
    check_export_target(path, format)
    with tempfile.TemporaryDirectory() as scratch:
        model_file = os.path.join(scratch, "feature_model.keras")
        feature_model.save(model_file)
        call_on_tensorflow_backend(
            "keras_rollback.export._tensorflow_export",
            "write_artifact",
            model_file=model_file,
            path=path,
            contract=contract,
        )
    logging.info(
        "Feature extractor (%s, uint8 [B, H, W, 3] -> %d-D L2-normalised features) written to %s",
        format,
        contract["feature_dim"],
        path,
    )
    return path


class ExportTargetError(UserError, ValueError):
    """The path an artifact is to be written to cannot hold it."""


def check_export_target(path, format):
    """Raises `ExportTargetError` unless `path` can receive an artifact of `format`.

    An ONNX artifact is a file ending in `.onnx`; a SavedModel is a folder, so `path` must
    not be a file. The folder the artifact goes into must exist.
    """
    path = os.fspath(path)
    if format == "onnx" and not path.endswith(".onnx"):
        raise ExportTargetError(
            f"An ONNX export is a file ending in '.onnx'. Received: output={path!r}."
        )
    if format == "tf_saved_model" and os.path.isfile(path):
        raise ExportTargetError(
            f"A SavedModel is a folder, but {path!r} is a file. Choose a folder path, or "
            "--format=onnx for a single file."
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ExportTargetError(
            f"Cannot write {path!r}: its folder {parent!r} does not exist. Create it first."
        )


def read_contract(path):
    """The input contract recorded beside an exported artifact (`feature_extractor.json`)."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    name = METADATA_FILE if os.path.isdir(path) else f"{os.path.basename(path)}.json"
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def _check_input_layout(model):
    shape = tuple(model.inputs[0].shape) if model.inputs else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            f"The exported extractor takes channels-last RGB images [B, H, W, 3]; the input of "
            f"model {model.name!r} has shape {shape}. Export a model whose input is "
            "(height, width, 3) (keras.config.image_data_format() 'channels_last')."
        )
    return shape[1:3]


def _check_single_normalisation(model, preprocessing):
    if preprocessing == "none":
        return
    for layer in _all_layers(model):
        if isinstance(layer, NORMALIZING_LAYERS):
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) of model {model.name!r} already "
                f"normalises the images; exporting with preprocessing={preprocessing!r} would "
                "normalise them twice. Pass preprocessing='none', or remove the layer."
            )


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _feature_dim(model):
    dims = model.outputs[0].shape[1:]
    size = 1
    for dim in dims:
        size *= dim
    return size
