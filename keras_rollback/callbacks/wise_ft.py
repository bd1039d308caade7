"""`WiSEFT`: the fine-tuned backbone interpolated, block by block, with the pre-trained one."""

import os

import keras

from keras_rollback.block_partition import BlockPartition
from keras_rollback.callbacks._block_arguments import check_snapshot_argument
from keras_rollback.callbacks._block_arguments import per_block_values
from keras_rollback.callbacks._block_arguments import reference_snapshot
from keras_rollback.plateau_rule import _raise_problems
from keras_rollback.pretrained_snapshot import PretrainedSnapshot


class WiSEFT(keras.callbacks.Callback):
    """WiSE-FT (Wortsman et al., CVPR 2022): interpolate the fine-tuned and pre-trained weights.

    Weight-space ensembling: after fine-tuning, each backbone block `b` is
    replaced by a mix of its pre-trained weights `w0` and its fine-tuned
    weights `w_ft`,

    `w = (1 - a_b) * w0 + a_b * w_ft`,

    and the head keeps its fine-tuned weights (`a = 1`: it has no
    pre-trained weights). `a_b = 0` is the pre-trained block, `a_b = 1` the
    fine-tuned one. Wortsman et al. mix a whole zero-shot CLIP model with
    one `a` and find that intermediate values keep the pre-trained model's
    robustness to distribution shift while matching fine-tuning in
    distribution. Here `a` may differ per block. Like rolling back, it
    moves blocks back toward their pre-trained weights, but once, after
    training, and only part of the way.

    The callback interpolates at the end of `fit` (`on_train_end`, after
    the last epoch's weights are in the model on every backend; a `fit`
    that stops with an exception is left as it was), so after `fit` returns
    the model holds the interpolated weights. `apply(model)` does the same
    to a model trained elsewhere. Every floating-point weight of a block is
    interpolated, BatchNorm moving statistics included (a mix of the two
    models' statistics, not the statistics of the mixed model: for
    BatchNorm networks, re-estimating them on training data after mixing,
    as SWA does, may help).

    With `depth_scaled=True` the coefficient grows linearly with the block's
    depth, so low blocks (general features: Yosinski et al., NeurIPS 2014)
    stay closer to their pre-trained weights than high ones, the same
    intuition as layer-wise learning-rate decay (`RefinePlan(layer_decay=...)`).
    For blocks `1..N` (from the input), `a_i = mixing + (1 - mixing) *
    (i - 1) / N`: block 1 gets `mixing`, and the line would reach 1 at the
    head (`i = N + 1`). With four blocks and `mixing=0.5`: 0.5, 0.625,
    0.75, 0.875. This depth rule is this library's, not from the paper.

    The pre-trained weights `w0` are captured when training starts at
    epoch 0, unless `snapshot` gives them (a `PretrainedSnapshot` or a
    file path, as for `RollbackRefine`; needed for `apply` outside `fit`
    and for resumed runs).

    Example:

    ```python
    wise_ft = WiSEFT(partition, mixing=0.5)
    model.fit(train_ds, epochs=20, callbacks=[wise_ft])  # model now holds the mix
    # Or on a model fine-tuned elsewhere:
    WiSEFT(partition, mixing=0.3, snapshot="run/pretrained.npz").apply(model)
    ```

    Args:
        partition: `BlockPartition` of the model being trained.
        mixing: Float in `[0, 1]`, or a dict from every block name of the
            partition to one: the weight `a` of the fine-tuned weights.
            Defaults to `0.5`.
        snapshot: Optional `PretrainedSnapshot`, or a path to a `.npz`
            snapshot file that is loaded if it exists and written otherwise.
            Defaults to `None` (captured when training starts at epoch 0).
        depth_scaled: Boolean. Whether the coefficient grows with depth from
            `mixing` at the lowest block (a float `mixing` only). Defaults to
            `False`.
    """

    def __init__(self, partition, *, mixing=0.5, snapshot=None, depth_scaled=False):
        super().__init__()
        problems = []
        coefficients = None
        if not isinstance(partition, BlockPartition):
            problems.append(f"Received: partition={partition!r}. Expected a BlockPartition.")
        else:
            coefficients, problem = per_block_values(
                "mixing", mixing, partition.block_names, lambda v: 0 <= v <= 1, "a float in [0, 1]"
            )
            problems.append(problem)
        if not isinstance(depth_scaled, bool):
            problems.append(f"Received: depth_scaled={depth_scaled!r}. Expected a boolean.")
        elif depth_scaled and isinstance(mixing, dict):
            problems.append(
                f"Received: mixing={mixing!r} with depth_scaled=True. Expected a float: the "
                "depth rule derives each block's coefficient from it."
            )
        problems.append(check_snapshot_argument(snapshot))
        _raise_problems("WiSEFT", problems)
        if depth_scaled and coefficients is not None:
            count = len(partition.block_names)
            coefficients = {
                block: float(mixing) + (1.0 - float(mixing)) * i / count
                for i, block in enumerate(partition.block_names)
            }
        self.partition = partition
        self.coefficients: dict[str, float] = coefficients or {}  # Set: problems raised above.
        self.depth_scaled = depth_scaled
        self._snapshot_arg = snapshot
        self.snapshot = snapshot if isinstance(snapshot, PretrainedSnapshot) else None

    def on_train_begin(self, logs=None):
        self.partition.check_model(self.model)
        self.snapshot = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.snapshot is None:
            # On JAX, `self.model` syncs the trainer's state first.
            self.snapshot = reference_snapshot(
                self._snapshot_arg, self.model, self.partition, epoch, "WiSEFT"
            )

    def on_train_end(self, logs=None):
        if self.snapshot is not None:
            self.apply(self.model)

    def apply(self, model):
        """Replaces each block of `model` by its mix with the pre-trained weights.

        Uses the snapshot captured in `fit`, else the one given as `snapshot`.

        Args:
            model: The fine-tuned `keras.Model`, of the partition's layout.
        """
        self.partition.check_model(model)
        snapshot = self.snapshot
        if snapshot is None:
            given = self._snapshot_arg
            if given is None or (
                not isinstance(given, PretrainedSnapshot) and not os.path.exists(given)
            ):
                raise ValueError(
                    "WiSEFT.apply needs the pre-trained weights: pass `snapshot=` a "
                    "PretrainedSnapshot or an existing snapshot file, or use the callback in "
                    f"`fit`, which captures them. Received: snapshot={given!r}"
                )
            snapshot = reference_snapshot(given, model, self.partition, 0, "WiSEFT")
        for variable in self.partition.variables(model, self.partition.block_names):
            a = self.coefficients[self.partition.group_of(variable.path)]
            if a == 1.0 or not keras.backend.is_float_dtype(variable.dtype):
                continue
            fine_tuned = keras.ops.convert_to_numpy(variable)
            pretrained = snapshot.arrays[variable.path].astype(fine_tuned.dtype)
            variable.assign((1.0 - a) * pretrained + a * fine_tuned)
