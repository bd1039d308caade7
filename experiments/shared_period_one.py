"""One period 1 for every method that shares it: trained once, branched into each method.

Rolling back, base_cy, Table 1's `keep_block:<block>` methods and plain fine-tuning all
start with the same period: ordinary fine-tuning with the same rates, weights, seed and
batches. The paper keeps block i *after one baseline*; training that period once per method
repeats it (Table 1: 5 x 80 = 400 epochs where 40 + 5 x 40 = 240 do) and, on a GPU, starts
each method from a different baseline.

The shared period is trained once, as the method `fine_tune` (whose only period it is), in
the work dir's `fine_tune/` folder. A method that shares it is then branched: its folder receives a copy of the
period's last checkpoint (weights and optimizer state), its pre-trained snapshot and its
per-epoch log, and training resumes from there as after a kill (`RunCheckpoint`), so that
period 2 begins as the paper's new period does (blocks rolled back, optimizer state reset,
rates restarted by `RollbackRefine`). Resuming is bit-identical to training on, so a branched
method's results equal those of training it alone (tested).

Every copy is atomic and the checkpoint's manifest is written last: a process killed while
branching leaves a method folder without a checkpoint, which the rerun branches again.
"""

import os
import shutil

from experiments import methods
from keras_rollback import _atomic_files
from keras_rollback import compat
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint

# The method whose only period is the shared one; its folder is the branches' source.
SOURCE_METHOD = "fine_tune"
_SHARING_METHODS = ("rollback", "base_cy", "fine_tune", *methods.CONTINUE_FROM_PERIOD_ONE)


def shares_period_one(method):
    """Whether `method`'s period 1 is ordinary fine-tuning's (same rates, length, batches).

    Not `fc_warmup` and `lp_ft` (their period 1 follows the frozen-backbone epochs) nor
    `plateau_rollback` (its period 1 ends where the training loss stops improving). L2-SP
    and WiSE-FT continue from it (`methods.CONTINUE_FROM_PERIOD_ONE`).
    """
    return method in _SHARING_METHODS or method.startswith("keep_block:")


def branch(source_dir, method_dir):
    """Seeds `method_dir` with the end of the period trained in `source_dir`.

    Does nothing when `method_dir` already has a checkpoint (branched or trained before).

    Args:
        source_dir: Folder of the finished shared period (`train.train_and_evaluate`'s
            layout: `checkpoints/`, `pretrained.npz`, `epochs.jsonl`).
        method_dir: Folder of the method that continues from it.

    Returns:
        The number of epochs the method starts with.
    """
    target = RunCheckpoint(os.path.join(method_dir, "checkpoints"))
    newest = target.newest()
    if newest is not None:
        return newest["epoch"]
    checkpoint = RunCheckpoint(os.path.join(source_dir, "checkpoints")).newest()
    if checkpoint is None:
        raise ValueError(
            f"Cannot branch {method_dir!r} from the shared period 1 in {source_dir!r}: it has "
            "no checkpoint. Pass --start_over to train the work dir again."
        )
    epochs = checkpoint["epoch"]
    # The source's log ends with the period (its training stopped there); a resumed method
    # drops any line past its checkpoint anyway (`train.train_and_evaluate`).
    for name in ("pretrained.npz", "epochs.jsonl"):
        _copy(os.path.join(source_dir, name), os.path.join(method_dir, name))
    checkpoints = os.path.join(method_dir, "checkpoints")
    # The manifest last: the checkpoint exists once its manifest does.
    _copy(checkpoint["weights"], os.path.join(checkpoints, os.path.basename(checkpoint["weights"])))
    _copy(
        checkpoint["manifest"], os.path.join(checkpoints, os.path.basename(checkpoint["manifest"]))
    )
    compat.print_msg(
        f"{os.path.basename(method_dir)}: branched from the shared period 1 in {source_dir} "
        f"({epochs} epochs trained once for every method that shares them)."
    )
    return epochs


def _copy(source, destination):
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    _atomic_files.atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))
