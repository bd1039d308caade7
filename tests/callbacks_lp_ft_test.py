"""LP-FT (`RefinePlan.linear_probe_then_fine_tune`) through RollbackRefine on the active backend."""

import keras
import numpy as np
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition
from testing_models import weights_by_path

from keras_rollback import LayerwiseSGD
from keras_rollback import RefinePlan
from keras_rollback import RollbackRefine


class _EpochEndWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(weights_by_path(self.model))  # On JAX, `self.model` syncs first.


def test_backbone_is_frozen_while_probing_then_everything_trains():
    model = tiny_cnn()
    model.compile(
        optimizer=LayerwiseSGD(momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    partition = tiny_partition(model)
    plan = RefinePlan.linear_probe_then_fine_tune(probe_epochs=2, fine_tune_epochs=2)
    pretrained = weights_by_path(model)
    probe = _EpochEndWeights()
    x, y = tiny_data()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[RollbackRefine(partition, plan=plan, verbose=0), probe],
    )

    head = partition.paths(partition.head_name)
    backbone = [p for b in partition.block_names for p in partition.paths(b)]
    for epoch in (0, 1):  # Probing: every backbone weight (BatchNorm statistics too) unchanged.
        for path in backbone:
            np.testing.assert_array_equal(probe.weights[epoch][path], pretrained[path], path)
        assert all(not np.array_equal(probe.weights[epoch][p], pretrained[p]) for p in head)
    before_fine_tuning = probe.weights[1]
    for path in backbone:  # Fine-tuning: every block weight moves (kernels and BN statistics).
        if path.endswith("bias"):
            continue  # Conv biases under BatchNorm get no gradient.
        assert not np.array_equal(probe.weights[3][path], before_fine_tuning[path]), path
