"""Command line of `export_feature_extractor`: a saved `.keras` model to SavedModel or ONNX.

Usage:

```
keras-rollback-export-features --model=/tmp/run/rollback/model.keras \
    --output=/tmp/reid_features --format=tf_saved_model --preprocessing=torch
python -m keras_rollback.export --model=model.keras --output=reid.onnx --format=onnx \
    --preprocessing=torch --image_size=288,144
```
"""

from absl import app
from absl import flags
from absl import logging

from keras_rollback import command_line
from keras_rollback.data import pipeline
from keras_rollback.export import feature_extractor
from keras_rollback.models.model_file import load_model_file


def define_flags():
    """Defines the CLI's flags (only when run as a script: importing defines none)."""
    flags.DEFINE_string("model", None, "Trained model saved with model.save(...keras).")
    flags.DEFINE_string("output", None, "SavedModel folder, or .onnx file, to write.")
    flags.DEFINE_enum("format", "tf_saved_model", list(feature_extractor.FORMATS), "Format.")
    flags.DEFINE_enum(
        "preprocessing",
        None,
        list(pipeline.PREPROCESSING_MODES),
        "Normalisation the weights expect (models.backbone_preprocessing of the backbone); "
        "'none' when the model normalises its input itself.",
    )
    flags.DEFINE_list(
        "image_size", None, "height,width the model was trained at; default: its input size."
    )
    flags.DEFINE_enum("interpolation", "bicubic", list(pipeline.INTERPOLATIONS), "Resize method.")
    flags.DEFINE_bool("flip", True, "Add the feature of the horizontally flipped image.")
    flags.mark_flags_as_required(["model", "output", "preprocessing"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    try:
        image_size = tuple(int(v) for v in FLAGS.image_size) if FLAGS.image_size else None
    except ValueError:
        raise app.UsageError(
            f"--image_size must be height,width integers. Received: {FLAGS.image_size}"
        ) from None
    logging.set_verbosity(logging.INFO)
    feature_extractor.check_export_target(FLAGS.output, FLAGS.format)  # Before loading.
    model = load_model_file(FLAGS.model)
    feature_extractor.export_feature_extractor(
        model,
        FLAGS.output,
        format=FLAGS.format,
        preprocessing=FLAGS.preprocessing,
        image_size=image_size,
        interpolation=FLAGS.interpolation,
        flip=FLAGS.flip,
    )


def run():
    """Entry point of the CLI: defines the flags and runs `main`."""
    define_flags()
    command_line.run(main)
