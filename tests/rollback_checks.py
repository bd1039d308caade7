"""The rollback state check shared by the tests: what the first step of a period starts from."""

import keras
import numpy as np
from testing_models import weights_by_path

from keras_rollback import LayerwiseAdamW
from keras_rollback import compat


class PeriodStartProbe(keras.callbacks.Callback):
    """Records weights and optimizer state around the first step of each epoch, through `self.model`.

    `momentum_before`/`momentum_after` hold the momentum buffers (`LayerwiseSGD`'s, or
    `LayerwiseAdamW`'s first moments); `state_before`/`state_after` every slot by name
    (`momentum`, and for `LayerwiseAdamW` also `velocity` and `step`).
    """

    def __init__(self):
        super().__init__()
        self.end_of_epoch, self.before_first_step, self.after_first_step = {}, {}, {}
        self.momentum_before, self.momentum_after = {}, {}
        self.state_before, self.state_after = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _optimizer(self):
        optimizer = self.model.optimizer
        # Under mixed_float16 a LossScaleOptimizer wraps the layerwise optimizer.
        return getattr(optimizer, "inner_optimizer", optimizer)

    def _state(self):
        optimizer = self._optimizer()
        self.optimizer_config = optimizer.get_config()
        self.adamw = isinstance(optimizer, LayerwiseAdamW)
        slots = {"momentum": optimizer.momentums}
        if self.adamw:
            slots.update(velocity=optimizer.velocities, step=optimizer.step_counts)
        paths = [v.path for v in compat.optimizer_trainable_variables(optimizer)]
        return {
            name: {p: keras.ops.convert_to_numpy(s).copy() for p, s in zip(paths, slot)}
            for name, slot in slots.items()
        }

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.before_first_step[self.epoch] = weights_by_path(self.model)
            self.state_before[self.epoch] = self._state()
            self.momentum_before[self.epoch] = self.state_before[self.epoch]["momentum"]

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.after_first_step[self.epoch] = weights_by_path(self.model)
            self.state_after[self.epoch] = self._state()
            self.momentum_after[self.epoch] = self.state_after[self.epoch]["momentum"]

    def on_epoch_end(self, epoch, logs=None):
        self.end_of_epoch[epoch] = weights_by_path(self.model)


def assert_period_starts_from_rolled_back_state(
    partition, probe, pretrained, start, rolled_back, learning_rates, momentum
):
    """Checks the first step of the period starting at epoch `start` (Nesterov `LayerwiseSGD`
    or `LayerwiseAdamW`).

    The rolled-back blocks hold their pre-trained values exactly (BatchNorm
    statistics included) and training had changed them, so the rollback is not
    vacuous; the kept blocks and the head continue from the previous epoch; the
    optimizer state is zero; and the compiled step really started there: with a zero
    buffer, Nesterov SGD moves each weight by exactly
    `lr * (1 + momentum) * buffer-after-step`, at its group's rate; AdamW from zero
    moments at step 1 moves the decayed weight `w * (1 - lr * weight_decay)` by exactly
    `lr * m_hat / (sqrt(v_hat) + epsilon)` with the moments after the step
    (`m_hat = m / (1 - beta_1)`, `v_hat = v / (1 - beta_2)`).

    Args:
        partition: The `BlockPartition` trained with.
        probe: The `PeriodStartProbe` of the run.
        pretrained: `weights_by_path` of the model before training.
        start: First epoch of the period.
        rolled_back: Block names rolled back at `start`.
        learning_rates: Group rates of epoch `start` (from `RollbackRefine.epoch_records`).
        momentum: The optimizer's momentum (`LayerwiseSGD`; unused for `LayerwiseAdamW`).
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
    for slot, values in probe.state_before[start].items():
        for path, buf in values.items():
            np.testing.assert_array_equal(buf, 0.0, err_msg=f"{slot} of {path}")
    after = probe.after_first_step[start]
    if probe.adamw:
        _assert_first_adamw_step(partition, probe, start, before, after, learning_rates)
        return
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


def _assert_first_adamw_step(partition, probe, start, before, after, learning_rates):
    config = probe.optimizer_config
    beta_1, beta_2 = config["beta_1"], config["beta_2"]
    state = probe.state_after[start]
    for path, m in state["momentum"].items():
        rate = learning_rates[partition.group_of(path)]
        assert np.any(m != 0), path
        np.testing.assert_array_equal(state["step"][path], 1.0, err_msg=path)
        decayed = before[path] * (1 - rate * config["weight_decay"])
        v_hat = state["velocity"][path] / (1 - beta_2)
        expected = rate * (m / (1 - beta_1)) / (np.sqrt(v_hat) + config["epsilon"])
        # Every element moves by about `rate`: the tolerance allows float32 rounding of the
        # weight itself (and XLA's fused step on JAX, as above).
        np.testing.assert_allclose(
            decayed - after[path],
            expected,
            rtol=1e-4,
            atol=max(1e-7, 1e-4 * np.abs(expected).max()) + 4 * np.spacing(np.abs(decayed).max()),
            err_msg=path,
        )
