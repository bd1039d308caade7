"""Input pipeline throughput next to the ResNet-50 training step's consumption rate.

Measures, in one run and on the same machine:
1. the training pipeline (`make_train_dataset`: read, decode, bicubic resize to 288x144,
   random flip, normalise, batch 32) in images/s, iterated without a model;
2. the images/s that a ResNet-50 ReID model (pooled 2048-D features, FC to the training
   ids) consumes in `train_on_batch` on the current Keras backend, fed from memory.
The ratio says whether input ever limits training here: above 1, the pipeline is faster.

Images come from `../shared/data/mini-market1501` (real 64x128 Market-1501 JPEGs), or from
the synthetic generator (128x64) when that folder is absent; the file list is repeated to
reach `--images` images per measured pass.

Usage:
    KERAS_BACKEND=jax python benchmarks/input_pipeline.py --images=2048 --train_steps=3
"""

import os
import pathlib
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from keras_rollback.data import market1501
from keras_rollback.data import pipeline
from keras_rollback.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 2048, "Images per measured pass of the input pipeline.")
flags.DEFINE_integer("batch_size", 32, "Batch size of both measurements.")
flags.DEFINE_integer("train_steps", 3, "Timed ResNet-50 training steps (after one warm-up step).")
flags.DEFINE_integer("num_parallel_calls", -1, "Parallel map calls; -1 is tf.data.AUTOTUNE.")
flags.DEFINE_string(
    "data", None, "Market-1501-layout folder; defaults to mini-market1501 or synthetic data."
)

SHARED_MINI_MARKET = (
    pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mini-market1501"
)


def training_records(data_dir, scratch):
    """Returns the training records of `data_dir`, the shared sample, or a synthetic set."""
    if data_dir is None and SHARED_MINI_MARKET.is_dir():
        data_dir = SHARED_MINI_MARKET
    if data_dir is None:
        data_dir = synthetic.write_synthetic_market1501(scratch, seed=0)
    return market1501.read_market1501(data_dir).train, str(data_dir)


def input_images_per_second(records, batch_size, num_parallel_calls):
    """Images/s of the training pipeline over one pass (after a warm-up batch)."""
    dataset = pipeline.make_train_dataset(
        records, batch_size=batch_size, seed=0, num_parallel_calls=num_parallel_calls
    )
    iterator = iter(dataset)
    next(iterator)  # Warm-up: graph tracing, thread pools, file cache.
    count, start = 0, time.perf_counter()
    for images, _ in iterator:
        count += int(images.shape[0])
    return count / (time.perf_counter() - start), count


def training_images_per_second(num_classes, batch_size, steps):
    """Images/s consumed by ResNet-50 + FC `train_on_batch` at 288x144 (data in memory)."""
    backbone = keras.applications.ResNet50(
        weights=None,
        include_top=False,
        pooling="avg",
        input_shape=(*pipeline.DEFAULT_IMAGE_SIZE, 3),
    )
    model = keras.Sequential([backbone, keras.layers.Dense(num_classes)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch_size, *pipeline.DEFAULT_IMAGE_SIZE, 3)).astype("float32")
    labels = rng.integers(0, num_classes, size=(batch_size,)).astype("int32")
    model.train_on_batch(images, labels)  # Warm-up: compilation.
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return steps * batch_size / (time.perf_counter() - start)


def main(argv):
    del argv
    num_parallel_calls = FLAGS.num_parallel_calls
    if num_parallel_calls == -1:
        num_parallel_calls = pipeline.tf.data.AUTOTUNE
    with tempfile.TemporaryDirectory() as scratch:
        records, source = training_records(FLAGS.data, scratch)
        repeats = -(-FLAGS.images // len(records))
        input_rate, counted = input_images_per_second(
            records * repeats, FLAGS.batch_size, num_parallel_calls
        )
    train_rate = training_images_per_second(751, FLAGS.batch_size, FLAGS.train_steps)
    print(f"machine: {os.cpu_count()} CPU cores; Keras backend: {keras.backend.backend()}")
    print(f"images: {source} ({len(records)} files, {counted} timed)")
    print(
        f"input pipeline (decode + bicubic resize 288x144 + flip + normalise, batch {FLAGS.batch_size}): "
        f"{input_rate:,.0f} images/s"
    )
    print(
        f"ResNet-50 train step at 288x144, batch {FLAGS.batch_size}, {FLAGS.train_steps} steps: "
        f"{train_rate:,.1f} images/s"
    )
    print(
        f"input / training ratio: {input_rate / train_rate:,.1f}x "
        f"({'input is not' if input_rate > train_rate else 'input IS'} the bottleneck)"
    )


if __name__ == "__main__":
    app.run(main)
