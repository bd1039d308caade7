"""Arguments shared by the callbacks that pull toward the pre-trained weights, block by block."""

import os
from collections.abc import Mapping

from keras_rollback.plateau_rule import _number_problem
from keras_rollback.pretrained_snapshot import PretrainedSnapshot


def per_block_values(name, value, block_names, valid, expected):
    """`value` (a number, or a mapping from every block name to one) as a dict per block.

    Returns:
        `(values, problem)`: a dict from block name to float and None, or
        None and what is wrong (echoing `value`).
    """
    if not isinstance(value, Mapping):
        problem = _number_problem(name, value, valid, expected)
        return (None, problem) if problem else (dict.fromkeys(block_names, float(value)), None)
    unknown = sorted(str(b) for b in value if b not in block_names)
    missing = [b for b in block_names if b not in value]
    if unknown or missing:
        return None, (
            f"Received: {name}={dict(value)!r}. Expected one value per block of the partition "
            f"{list(block_names)}: unknown names {unknown}, missing blocks {missing}."
        )
    problems = [_number_problem(f"{name}[{b!r}]", value[b], valid, expected) for b in block_names]
    problems = [p for p in problems if p]
    if problems:
        return None, " ".join(problems)
    return {b: float(value[b]) for b in block_names}, None


def check_snapshot_argument(snapshot):
    """Returns an error message unless `snapshot` is None, a `PretrainedSnapshot` or a path."""
    if snapshot is None or isinstance(snapshot, (PretrainedSnapshot, str, os.PathLike)):
        return None
    return (
        "`snapshot` must be a PretrainedSnapshot, a file path or None. "
        f"Received: snapshot={snapshot!r}"
    )


def reference_snapshot(snapshot, model, partition, epoch, owner):
    """The pre-trained snapshot for a run that is at `epoch`.

    Args:
        snapshot: A `PretrainedSnapshot` (checked against `partition`); a path
            to a `.npz` snapshot file, loaded if it exists and otherwise
            captured from `model` and saved there (as `RollbackRefine` does);
            or None: captured from `model` now.
        model: The model being trained.
        partition: Its `BlockPartition`.
        epoch: The epoch training is at (0-based). Capturing past epoch 0 is
            an error: the weights are then no longer the pre-trained ones.
        owner: Name of the callback, for the error message.
    """
    if isinstance(snapshot, PretrainedSnapshot):
        snapshot.check(partition)
        return snapshot
    if snapshot is not None and os.path.exists(snapshot):
        return PretrainedSnapshot.load(snapshot, partition)
    if epoch > 0:
        raise ValueError(
            f"Training starts at epoch {epoch} but {owner} has no pre-trained snapshot: the "
            "model's weights are no longer the pre-trained ones. Pass `snapshot=` the "
            "snapshot (or its file) of the run that started at epoch 0."
        )
    captured = PretrainedSnapshot.capture(model, partition)
    if snapshot is not None:
        captured.save(snapshot)
    return captured
