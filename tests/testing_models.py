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
