"""`refine_tune`: Algorithm 1 of the paper as an explicit loop, one `fit` per period."""

import keras

from keras_rollback.callbacks.rollback_refine import RollbackRefine
from keras_rollback.fit_verbosity import fit_verbosity
from keras_rollback.refine_plan import RefinePlan


def refine_tune(
    model,
    partition,
    train_data,
    *,
    periods=4,
    period_epochs=40,
    plan=None,
    snapshot=None,
    callbacks=None,
    verbose="auto",
    **fit_kwargs,
):
    """Rolling-back refine-tuning as Algorithm 1: one `model.fit` per period.

    Follows the authors' released code, which runs one script per period:
    before each period the model is recompiled with a fresh copy of its
    optimizer (so its state starts from zero: SGD's momentum, AdamW's
    moments and step counts, as in a new PyTorch optimizer; a
    `LossScaleOptimizer` is copied with its inner optimizer), blocks are
    rolled back as the
    plan says, and the period is trained with `model.fit(initial_epoch=...,
    epochs=...)`. The rollback and the learning rates come from the same
    `RollbackRefine` machinery as the one-`fit` callback path, so both paths
    give the same weights.

    Example:

    ```python
    model.compile(optimizer=LayerwiseSGD(), loss="sparse_categorical_crossentropy")
    history = refine_tune(model, BlockPartition.for_model(model), train_ds,
                          periods=4, period_epochs=40)
    ```

    Args:
        model: Compiled `keras.Model` (optimizer: `LayerwiseSGD` or
            `LayerwiseAdamW`, possibly in a `LossScaleOptimizer`).
        partition: `BlockPartition` of `model`.
        train_data: Training data as accepted by `model.fit`.
        periods: Integer > 0. Number of periods. Defaults to `4`.
        period_epochs: Integer > 0. Epochs per period. Defaults to `40`.
        plan: Optional `RefinePlan`; replaces `periods` and `period_epochs`.
        snapshot: Optional `PretrainedSnapshot` or `.npz` path (loaded if it
            exists, else captured from `model` and written). Defaults to a
            snapshot captured from `model` before period 1.
        callbacks: Optional list of extra callbacks, used in every period.
        verbose: `"auto"`, 0, 1 or 2, passed to `model.fit`; `"auto"` shows progress
            bars on a terminal and one line per epoch otherwise (see
            `fit_verbosity`). Defaults to `"auto"`.
        **fit_kwargs: Other `model.fit` arguments (`validation_data`,
            `steps_per_epoch`, ...), except `epochs` and `initial_epoch`.

    Returns:
        A `keras.callbacks.History` whose `history` concatenates the periods'
        epoch logs.
    """
    for reserved in ("epochs", "initial_epoch"):
        if reserved in fit_kwargs:
            raise ValueError(
                f"refine_tune sets `{reserved}` itself from the plan. Received: "
                f"{reserved}={fit_kwargs[reserved]!r}"
            )
    verbose = fit_verbosity(verbose)
    if plan is None:
        plan = RefinePlan(period_epochs=period_epochs, periods=periods)
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"Model {model.name!r} is not compiled: compile it with LayerwiseSGD or "
            "LayerwiseAdamW first."
        )
    refine = RollbackRefine(
        partition, plan=plan, snapshot=snapshot, verbose=0 if verbose == 0 else 1
    )
    history = keras.callbacks.History()
    history.history = {}
    history.epoch = []
    for period in plan.resolve(partition.block_names, partition.head_name):
        if period.start_epoch > 0:
            _recompile_with_fresh_optimizer(model)
        period_history = model.fit(
            train_data,
            initial_epoch=period.start_epoch,
            epochs=period.end_epoch,
            callbacks=[refine, *(callbacks or [])],
            verbose=verbose,
            **fit_kwargs,
        )
        history.epoch.extend(period_history.epoch)
        for key, values in period_history.history.items():
            history.history.setdefault(key, []).extend(values)
    history.set_model(model)
    return history


def _recompile_with_fresh_optimizer(model):
    """Compiles `model` again, as before, but with a new optimizer of the same config."""
    compile_args = keras.saving.deserialize_keras_object(model.get_compile_config())
    optimizer = model.optimizer
    compile_args["optimizer"] = optimizer.__class__.from_config(optimizer.get_config())
    model.compile(**compile_args)
