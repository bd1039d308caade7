"""The rollback state check shared by the tests: what the first step of a period starts from."""

import keras
import numpy as np
from testing_models import weights_by_path

from keras_rollback import compat


class PeriodStartProbe(keras.callbacks.Callback):
    """Records weights and momentum around the first step of each epoch, through `self.model`."""

    def __init__(self):
        super().__init__()
        self.end_of_epoch, self.before_first_step, self.after_first_step = {}, {}, {}
        self.momentum_before, self.momentum_after = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _momentum(self):
        optimizer = self.model.optimizer
        # Under mixed_float16 a LossScaleOptimizer wraps the LayerwiseSGD.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        return {
            v.path: keras.ops.convert_to_numpy(m).copy()
            for v, m in zip(compat.optimizer_trainable_variables(optimizer), optimizer.momentums)
        }

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.before_first_step[self.epoch] = weights_by_path(self.model)
            self.momentum_before[self.epoch] = self._momentum()

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.after_first_step[self.epoch] = weights_by_path(self.model)
            self.momentum_after[self.epoch] = self._momentum()

    def on_epoch_end(self, epoch, logs=None):
        self.end_of_epoch[epoch] = weights_by_path(self.model)


def assert_period_starts_from_rolled_back_state(
    partition, probe, pretrained, start, rolled_back, learning_rates, momentum
):
    """Checks the first step of the period starting at epoch `start` (Nesterov `LayerwiseSGD`).

    The rolled-back blocks hold their pre-trained values exactly (BatchNorm
    statistics included) and training had changed them, so the rollback is not
    vacuous; the kept blocks and the head continue from the previous epoch; the
    momentum is zero; and the compiled step really started there: with a zero
    buffer, Nesterov SGD moves each weight by exactly
    `lr * (1 + momentum) * buffer-after-step`, at its group's rate.

    Args:
        partition: The `BlockPartition` trained with.
        probe: The `PeriodStartProbe` of the run.
        pretrained: `weights_by_path` of the model before training.
        start: First epoch of the period.
        rolled_back: Block names rolled back at `start`.
        learning_rates: Group rates of epoch `start` (from `RollbackRefine.epoch_records`).
        momentum: The optimizer's momentum.
    """
    before = probe.before_first_step[start]
    previous_end = probe.end_of_epoch[start - 1]
    for block in rolled_back:
        for path in partition.paths(block):
            np.testing.assert_array_equal(before[path], pretrained[path], err_msg=path)
            assert not np.array_equal(previous_end[path], pretrained[path]), path
    continued = [g for g in partition.group_names if g not in rolled_back]
    for path in [q for g in continued for q in partition.paths(g)]:
        np.testing.assert_array_equal(before[path], previous_end[path], err_msg=path)
    for path, buf in probe.momentum_before[start].items():
        np.testing.assert_array_equal(buf, 0.0, err_msg=path)
    after = probe.after_first_step[start]
    for path, buf in probe.momentum_after[start].items():
        rate = learning_rates[partition.group_of(path)]
        assert np.any(buf != 0), path
        # Tolerance relative to the variable's largest move: on JAX, XLA's fused step leaves
        # elements that barely move up to ~1e-4 of that off (torch and TensorFlow agree to
        # float32 rounding).
        expected = rate * (1 + momentum) * buf
        np.testing.assert_allclose(
            before[path] - after[path],
            expected,
            rtol=1e-4,
            atol=max(1e-7, 1e-4 * np.abs(expected).max()),
            err_msg=path,
        )
