"""Tiny models shared by the tests: fast on 2 CPU cores, with BatchNorm in every block."""

import keras
import numpy as np

from keras_rollback import BlockPartition

TINY_BLOCKS = {"B1": "b1_", "B2": "b2_", "B3": "b3_", "B4": "b4_"}


def tiny_cnn(num_classes=3, input_shape=(8, 8, 3), seed=0):
    """Four conv+BN blocks, global pooling and a dense head named `fc`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = inputs
    for block in range(1, 5):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"b{block}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"b{block}_bn")(x)
        x = keras.layers.ReLU(name=f"b{block}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def tiny_partition(model):
    return BlockPartition(model, blocks=TINY_BLOCKS, head="fc/")


def tiny_data(n=16, num_classes=3, input_shape=(8, 8, 3), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=n)
    return x, y


def weights_by_path(model):
    return {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}


def skip_cnn(num_classes=3, input_shape=(16, 16, 3), seed=0):
    """A functional CNN with a residual add, a strided projection shortcut and a squeeze-excite branch.

    Resolution blocks: B1 (16x16) `stem_*`, `res_*`; B2 (8x8, then 6x6 after a valid
    convolution) `down_*`, `se_conv`, `trim_*`; B3 (3x3) `top_*`; head `fc`.
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    y = layers.BatchNormalization(name="res_bn")(
        layers.Conv2D(4, 3, padding="same", name="res_conv")(x)
    )
    x = layers.ReLU(name="res_relu")(layers.Add(name="res_add")([x, y]))
    shortcut = layers.Conv2D(8, 1, strides=2, name="down_proj")(x)
    y = layers.Conv2D(8, 3, strides=2, padding="same", name="down_conv")(x)
    y = layers.BatchNormalization(name="down_bn")(y)
    scale = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(y)
    scale = layers.Conv2D(8, 1, activation="sigmoid", name="se_conv")(scale)
    y = layers.Multiply(name="se_scale")([y, scale])
    x = layers.ReLU(name="down_relu")(layers.Add(name="down_add")([shortcut, y]))
    x = layers.BatchNormalization(name="trim_bn")(layers.Conv2D(8, 3, name="trim_conv")(x))
    x = layers.MaxPooling2D(2, name="pool")(layers.ReLU(name="trim_relu")(x))
    x = layers.BatchNormalization(name="top_bn")(
        layers.Conv2D(8, 3, padding="same", name="top_conv")(x)
    )
    x = layers.GlobalAveragePooling2D(name="gap")(layers.ReLU(name="top_relu")(x))
    outputs = layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name="skip_cnn")
