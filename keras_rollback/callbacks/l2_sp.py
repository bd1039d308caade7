"""`L2SP`: fine-tuning with the backbone decaying toward its pre-trained weights (L2-SP)."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_rollback import compat
from keras_rollback.block_partition import BlockPartition
from keras_rollback.callbacks._block_arguments import check_snapshot_argument
from keras_rollback.callbacks._block_arguments import per_block_values
from keras_rollback.callbacks._block_arguments import reference_snapshot
from keras_rollback.plateau_rule import _number_problem
from keras_rollback.plateau_rule import _raise_problems


@keras.saving.register_keras_serializable(package="keras_rollback")
class L2SPPenalty(keras.regularizers.Regularizer):
    """L2 penalty centred on an anchor: `strength / 2 * ||w - anchor||^2`.

    The weight regularizer that `L2SP` attaches to each variable
    (`variable.regularizer`) for the length of a `fit`. With `anchor=None`
    it is the ordinary `strength / 2 * ||w||^2` (L2-SP's term for the new
    head). Its gradient is `strength * (w - anchor)`: zero at the anchor.

    Example:

    ```python
    penalty = L2SPPenalty(0.1, anchor=np.ones((2, 2)))
    penalty(keras.ops.zeros((2, 2)))  # 0.1 / 2 * 4 = 0.2
    ```

    Args:
        strength: Float >= 0. The penalty's coefficient (L2-SP's `alpha` or
            `beta`).
        anchor: Optional array of the variable's shape: the weights the
            penalty pulls toward. Defaults to `None` (zero).
    """

    def __init__(self, strength, anchor=None):
        problem = _number_problem("strength", strength, lambda v: v >= 0, "a float >= 0")
        _raise_problems("L2SPPenalty", [problem])
        self.strength = float(strength)
        # A backend tensor made once, eagerly: a compiled train step captures it
        # (TensorFlow as an input, JAX as a constant) rather than re-embedding numpy.
        self.anchor = None if anchor is None else ops.convert_to_tensor(np.asarray(anchor))

    def __call__(self, x):
        difference = x if self.anchor is None else ops.subtract(x, ops.cast(self.anchor, x.dtype))
        return ops.multiply(0.5 * self.strength, ops.sum(ops.square(difference)))

    def get_config(self):
        anchor = None if self.anchor is None else ops.convert_to_numpy(self.anchor).tolist()
        return {"strength": self.strength, "anchor": anchor}


class L2SP(keras.callbacks.Callback):
    """L2-SP (Li, Grandvalet, Davoine, ICML 2018): decay toward the pre-trained weights.

    Plain fine-tuning with weight decay pulls every weight toward zero. L2-SP
    ("starting point") pulls the backbone toward its pre-trained weights
    `w0` instead, and keeps an ordinary L2 penalty on the new head:

    `loss + alpha / 2 * ||w_backbone - w0||^2 + beta / 2 * ||w_head||^2`

    over the trainable variables (BatchNorm moving statistics are state and
    are not penalised). `alpha` may differ per block. It is an alternative to
    rolling back: the backbone is kept near the pre-trained solution all the
    time instead of being reset to it at period starts.

    For the length of each `fit`, the callback sets an `L2SPPenalty` as the
    `regularizer` of every penalised variable, so the terms enter the loss
    through the model's regularization losses, inside the compiled train
    step of every backend (the penalties are part of the logged `loss` and
    `val_loss`, as Keras' own weight regularizers are). It rebuilds the
    train and test functions when it attaches them (at the first epoch) and
    again when it removes them at the end of training, so no step traced
    with or without them outlives the `fit`. On JAX the anchors are constants
    of the compiled step (its trainer passes only the model's, optimizer's
    and metrics' variables into it): compiling takes longer for a large
    backbone, once per `fit` (measured on 2 busy CPU cores, a 17M-parameter
    model: first step 13 s against 4 s without L2SP).

    The optimizer's own weight decay must be 0 on the backbone for true
    L2-SP: decay toward zero would fight the pull toward `w0`. The callback
    warns when the compiled optimizer decays backbone variables (for
    `LayerwiseSGD` and `LayerwiseAdamW`, any `weight_decay > 0`; for Keras
    optimizers, a `weight_decay` not excluded with
    `exclude_from_weight_decay`). The head's `beta` plays the role of weight
    decay: with SGD, `beta` equals PyTorch's `weight_decay` on the head.

    The anchor `w0` is the pre-trained snapshot: captured when training
    starts at epoch 0 (so each `fit` from epoch 0 re-captures it), or given.
    For a resumable run, or to keep one anchor over several `fit` calls,
    pass `snapshot` (a `PretrainedSnapshot` or a file path, as for
    `RollbackRefine`). A variable that already has a regularizer of its own
    is an error when L2-SP would penalise it (put the head's L2 in `beta`).
    If `fit` stops with an exception, the penalties stay attached until the
    next `fit` with an `L2SP` callback replaces them, or until
    `remove_penalties(model)`.

    Example:

    ```python
    partition = BlockPartition.for_model(model)
    model.compile(optimizer=LayerwiseSGD(momentum=0.9, weight_decay=0.0), loss=loss)
    model.fit(train_ds, epochs=30, callbacks=[L2SP(partition, alpha=0.1, beta=0.01)])
    # A stronger pull on the low blocks:
    alpha = {**dict.fromkeys(partition.block_names, 0.01), "stem": 0.1}
    L2SP(partition, alpha=alpha, beta=0.01)
    ```

    Args:
        partition: `BlockPartition` of the model being trained.
        alpha: Float >= 0, or a dict from every block name of the partition
            to a float >= 0. Strength of the pull of the backbone toward
            `w0` (0 turns it off for a block). Defaults to `0.1`.
        beta: Float >= 0. Strength of the ordinary L2 penalty on the head;
            0 turns it off. Defaults to `0.01`.
        snapshot: Optional `PretrainedSnapshot`, or a path to a `.npz`
            snapshot file that is loaded if it exists and written otherwise.
            Defaults to `None` (captured when training starts at epoch 0).
    """

    def __init__(self, partition, *, alpha=0.1, beta=0.01, snapshot=None):
        super().__init__()
        problems = []
        if not isinstance(partition, BlockPartition):
            problems.append(f"Received: partition={partition!r}. Expected a BlockPartition.")
            alphas = None
        else:
            alphas, problem = per_block_values(
                "alpha", alpha, partition.block_names, lambda v: v >= 0, "a float >= 0"
            )
            problems.append(problem)
        problems.append(_number_problem("beta", beta, lambda v: v >= 0, "a float >= 0"))
        problems.append(check_snapshot_argument(snapshot))
        _raise_problems("L2SP", problems)
        self.partition = partition
        self.alpha: dict[str, float] = alphas or {}  # Set: problems raised above.
        self.beta = float(beta)
        self._snapshot_arg = snapshot
        self.snapshot = None
        self._penalised: list = []

    def on_train_begin(self, logs=None):
        self.partition.check_model(self.model)
        self.snapshot = None
        self._penalised = []

    def on_epoch_begin(self, epoch, logs=None):
        if self.snapshot is not None:
            return
        model = self.model  # On JAX, this syncs the trainer's state first.
        self.snapshot = reference_snapshot(self._snapshot_arg, model, self.partition, epoch, "L2SP")
        self._warn_if_backbone_decays(model)
        self._attach(model, self.snapshot)

    def on_train_end(self, logs=None):
        self.remove_penalties(self.model)

    def remove_penalties(self, model):
        """Removes the `L2SPPenalty` regularizers from `model`'s variables."""
        removed = False
        for variable in model.weights:
            if isinstance(variable.regularizer, L2SPPenalty):
                variable.regularizer = None
                removed = True
        self._penalised = []
        if removed:
            _rebuild_step_functions(model)

    def _attach(self, model, snapshot):
        self.remove_penalties(model)  # Left over from an interrupted fit.
        head = self.partition.head_name
        for variable in self.partition.variables(model):
            group = self.partition.group_of(variable.path)
            strength = self.beta if group == head else self.alpha[group]
            if not variable.trainable or strength == 0:
                continue
            if variable.regularizer is not None:
                raise ValueError(
                    f"Variable {variable.path!r} already has a regularizer "
                    f"({variable.regularizer!r}); L2SP would replace it. Remove it (for the "
                    "head, an L2 penalty is L2SP's `beta`)."
                )
            anchor = None if group == head else snapshot.arrays[variable.path]
            variable.regularizer = L2SPPenalty(strength, anchor)
            self._penalised.append(variable)
        _rebuild_step_functions(model)

    def _warn_if_backbone_decays(self, model):
        optimizer = getattr(model, "optimizer", None)
        # A mixed-precision LossScaleOptimizer wraps the real one.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if optimizer is None:
            return
        backbone = [
            v
            for v in self.partition.variables(model, self.partition.block_names)
            if v.trainable and self.alpha[self.partition.group_of(v.path)] > 0
        ]
        # LayerwiseSGD (L2 in the gradient) and LayerwiseAdamW (decoupled) decay every variable.
        decay = getattr(optimizer, "l2_weight_decay", 0.0) or getattr(
            optimizer, "adamw_weight_decay", 0.0
        )
        decayed = backbone if decay else []
        if not decay and isinstance(optimizer, keras.optimizers.Optimizer):
            decay = optimizer.weight_decay
            decayed = [v for v in backbone if compat.optimizer_decays_variable(optimizer, v)]
        if decayed:
            warnings.warn(
                f"L2SP: the compiled optimizer {type(optimizer).__name__} has weight decay "
                f"{decay} on {len(decayed)} backbone variables (e.g. {decayed[0].path!r}): it "
                "pulls them toward zero while L2-SP pulls them toward the pre-trained weights. "
                "For L2-SP, compile with weight_decay=0 on the backbone (the head's L2 is `beta`).",
                stacklevel=2,
            )


def _rebuild_step_functions(model):
    """Makes the next train and test steps trace afresh (TensorFlow and JAX cache them)."""
    if getattr(model, "compiled", False):
        model.make_train_function(force=True)
        model.make_test_function(force=True)
