"""Converts a torchvision ResNet checkpoint into a Keras `.weights.h5` backbone file.

Usage:

```
python -m keras_rollback.models.convert_torchvision --arch resnet50 \
    --input resnet50-0676ba61.pth --output resnet50.weights.h5
```

The output loads with `build_backbone(arch, weights="resnet50.weights.h5")` or
`build_reid_model(num_classes, arch, weights="resnet50.weights.h5")`.
"""

import os

from absl import app
from absl import flags
from absl import logging

from keras_rollback import command_line
from keras_rollback.models.torchvision_resnet import RESNET_CONFIGS
from keras_rollback.models.torchvision_resnet import keras_hub_resnet
from keras_rollback.models.torchvision_weights import load_torchvision_weights


def convert_torchvision_checkpoint(arch, input_path, output_path, *, prefix=""):
    """Converts a torchvision ResNet state_dict into a keras-hub backbone weights file.

    Builds `keras_hub_resnet(arch)`, loads the checkpoint with
    `load_torchvision_weights` (all or nothing) and saves it with
    `save_weights`.

    Args:
        arch: String. `"resnet18"`, `"resnet34"`, `"resnet50"`, `"resnet101"`
            or `"resnet152"`.
        input_path: String or path-like. The torchvision checkpoint.
        output_path: String or path-like. The `.weights.h5` file to write.
        prefix: String. Prefix of the ResNet's entries in the state_dict.
            Defaults to `""`.

    Returns:
        The converted backbone (`keras.Model`).
    """
    output_path = os.fspath(output_path)
    if not output_path.endswith(".weights.h5"):
        raise ValueError(
            f"The output must end in '.weights.h5'. Received: output_path={output_path!r}"
        )
    backbone = keras_hub_resnet(arch)
    load_torchvision_weights(backbone, input_path, prefix=prefix)
    backbone.save_weights(output_path)
    logging.info("Wrote %s (%s, %d parameters).", output_path, arch, backbone.count_params())
    return backbone


def define_flags():
    """Defines the CLI's flags (only when run as a script: importing defines none)."""
    flags.DEFINE_enum(
        "arch", None, list(RESNET_CONFIGS), "torchvision ResNet architecture of the checkpoint."
    )
    flags.DEFINE_string("input", None, "torchvision state_dict: .pth, .pt, .bin or .safetensors.")
    flags.DEFINE_string("output", None, "Keras weights file to write; must end in .weights.h5.")
    flags.DEFINE_string(
        "prefix", "", "Prefix of the ResNet's entries in the state_dict, e.g. 'module.'."
    )
    flags.mark_flags_as_required(["arch", "input", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    convert_torchvision_checkpoint(FLAGS.arch, FLAGS.input, FLAGS.output, prefix=FLAGS.prefix)


def run():
    """Entry point of the CLI: defines the flags and runs `main`."""
    define_flags()
    command_line.run(main)


if __name__ == "__main__":
    run()
