"""NanGuard: stops at the first non-finite batch loss, naming the step and where a rerun resumes."""

import pytest

from keras_rollback.callbacks.nan_guard import NanGuard
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint


def _guard_at_epoch(guard, epoch):
    guard.on_train_begin()
    guard.on_epoch_begin(epoch)
    return guard


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_raises_naming_epoch_and_step(loss):
    guard = _guard_at_epoch(NanGuard(), 4)
    guard.on_train_batch_end(0, {"loss": 1.5})
    with pytest.raises(
        FloatingPointError, match=rf"Loss is {loss} at epoch 5, step 8.*No RunCheckpoint"
    ):
        guard.on_train_batch_end(7, {"loss": loss})


def test_names_the_newest_checkpoint_or_says_there_is_none(tmp_path):
    checkpoint = RunCheckpoint(tmp_path)
    guard = _guard_at_epoch(NanGuard(checkpoint), 0)
    with pytest.raises(
        FloatingPointError, match=r"No checkpoint was saved yet in .*a rerun starts over"
    ):
        guard.on_train_batch_end(0, {"loss": float("nan")})
    checkpoint.last_saved = {"epoch": 3, "weights": str(tmp_path / "epoch-000003.weights.h5")}
    with pytest.raises(
        FloatingPointError, match=r"epoch-000003\.weights\.h5' \(3 finished epochs\)"
    ):
        guard.on_train_batch_end(0, {"loss": float("nan")})


def test_bad_checkpoint_argument_raises_at_construction():
    with pytest.raises(ValueError, match="checkpoint='ckpt'"):
        NanGuard(checkpoint="ckpt")
