"""The TensorFlow side of `export_feature_extractor`: runs on the TensorFlow backend only."""

import json
import os

import keras
import keras_hub  # noqa: F401  (registers keras-hub's classes for loading the model)
import tensorflow as tf

from keras_rollback.data import pipeline

ONNX_OPSET = 17


def feature_function(model, contract, *, resize):
    """`images (uint8 [B, H, W, 3]) -> {"features": float32 [B, D]}`, as `extract_features`."""
    transform = pipeline.ImageTransform(
        image_size=tuple(contract["image_size"]),
        preprocessing=contract["preprocessing"],
        interpolation=contract["interpolation"],
    )

    def features(images):
        tf.debugging.assert_equal(
            tf.shape(images)[-1],
            3,
            message="The feature extractor takes channels-last RGB uint8 images [B, H, W, 3] "
            "(not normalised); the last dimension of the images is not 3",
        )
        batch_size = tf.shape(images)[0]
        # The evaluation pipeline's own operations, batched: resize (rounded to integer
        # levels), then the weights' normalisation.
        pixels = transform.resize(images) if resize else tf.cast(images, tf.float32)
        pixels = pipeline.normalize_images(pixels, contract["preprocessing"])
        if contract["flip"]:
            pixels = tf.concat([pixels, tf.reverse(pixels, axis=[2])], axis=0)
        output = tf.reshape(model(pixels, training=False), [tf.shape(pixels)[0], -1])
        if contract["flip"]:
            output = output[:batch_size] + output[batch_size:]
        norm = tf.norm(output, axis=1, keepdims=True)
        return {contract["output"]: output / tf.maximum(norm, 1e-12)}

    return features


def write_artifact(model_file, path, contract):
    """Loads the `.keras` feature model and writes the artifact `contract` describes."""
    model = keras.saving.load_model(model_file, compile=False)
    input_spec = tf.TensorSpec(contract["input_shape"], tf.uint8, name=contract["input"])
    if contract["format"] == "tf_saved_model":
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serving_default",
            tf.function(feature_function(model, contract, resize=True)),
            input_signature=[input_spec],
        )
        archive.write_out(path, verbose=False)
        with open(os.path.join(path, "feature_extractor.json"), "w") as f:
            json.dump(contract, f, indent=2)
        return
    _write_onnx(model, path, contract, input_spec)


def _write_onnx(model, path, contract, input_spec):
    import onnx
    import tf2onnx

    function = tf.function(feature_function(model, contract, resize=False))
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=[input_spec], opset=ONNX_OPSET
    )
    for key, value in contract.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx.save(proto, path)
    with open(f"{path}.json", "w") as f:
        json.dump(contract, f, indent=2)
