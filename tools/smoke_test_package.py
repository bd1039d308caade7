"""Smoke test of an installed keras-rollback: import it, build a tiny model, refine-tune it.

Run from outside the checkout (so the installed package, not the source tree, is imported):

    cd /tmp && python /path/to/tools/smoke_test_package.py

Trains a two-block CNN with `RollbackRefine` for two one-epoch periods and checks that
block B2 was rolled back to its pre-trained weights at the start of period 2 while B1 was
kept. Exits non-zero on any failure. `tools/check_package.sh` runs it against the wheel and
the sdist in fresh virtual environments.
"""

import pathlib
import sys

import keras
import numpy as np

import keras_rollback
from keras_rollback import BlockPartition
from keras_rollback import LayerwiseSGD
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine


class _RecordPeriodStarts(keras.callbacks.Callback):
    """Weights at the beginning of each epoch, after `RollbackRefine` has acted."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_begin(self, epoch, logs=None):
        self.weights.append(
            {w.path: keras.ops.convert_to_numpy(w).copy() for w in self.model.weights}
        )


def main():
    checkout = pathlib.Path(__file__).resolve().parents[1]
    imported_from = pathlib.Path(keras_rollback.__file__).resolve()
    if checkout in imported_from.parents and "site-packages" not in str(imported_from):
        raise SystemExit(
            f"keras_rollback was imported from the checkout ({imported_from}), not the install"
        )
    print(
        f"keras_rollback {keras_rollback.__version__} from {imported_from.parent} "
        f"on Keras {keras.__version__} ({keras.backend.backend()})"
    )

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="b1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="b1_bn")(x)
    x = keras.layers.Conv2D(4, 3, name="b2_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    partition = BlockPartition(model, blocks={"B1": "b1_", "B2": "b2_"}, head="head/")
    pretrained = {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}

    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9, nesterov=True, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 3, size=16)
    probe = _RecordPeriodStarts()
    rollback = RollbackRefine(partition, plan=RefinePlan(period_epochs=1, periods=2), verbose=0)
    history = model.fit(
        images, labels, epochs=2, batch_size=4, verbose=0, callbacks=[rollback, probe]
    )

    assert history.history["period"] == [1, 2], history.history
    period2 = probe.weights[1]
    for path in partition.paths("B2"):
        np.testing.assert_array_equal(
            period2[path], pretrained[path], err_msg=f"{path} not rolled back"
        )
    assert any(not np.array_equal(period2[p], pretrained[p]) for p in partition.paths("B1")), (
        "B1 not kept"
    )
    print(f"smoke test passed: 2 periods, B2 rolled back, losses {history.history['loss']}")


if __name__ == "__main__":
    sys.exit(main())
