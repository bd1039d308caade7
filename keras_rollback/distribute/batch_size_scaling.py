"""Learning rates for data-parallel training with a global batch other than the paper's 32."""

import dataclasses
import math

from keras_rollback.refine_plan import LEARNING_RATE_FIELDS
from keras_rollback.refine_plan import RefinePlan

PAPER_BATCH_SIZE = 32
SCALING_RULES = ("linear", "sqrt")


def batch_size_scale(global_batch_size, *, reference_batch_size=PAPER_BATCH_SIZE, rule="linear"):
    """Factor that carries learning rates tuned at one batch size over to another.

    Under `tf.distribute.MirroredStrategy` and `keras.distribution.DataParallel`
    each step averages the loss over the global batch (all replicas), so a
    run on `n` devices with the same global batch takes the same steps as
    one device and needs no change. Growing the global batch (a fixed batch
    per device on more devices) takes fewer, less noisy steps per epoch:
    the "linear" rule (Goyal et al., 2017) multiplies every learning rate
    by `global_batch_size / reference_batch_size`; the "sqrt" rule
    (Hoffer et al., 2017) by its square root, which keeps the gradient
    noise scale. Neither is applied unless asked for.

    Example:

    ```python
    batch_size_scale(128)                 # 4.0: the paper's rates are for batch 32
    batch_size_scale(128, rule="sqrt")    # 2.0
    ```

    Args:
        global_batch_size: Integer > 0. Images per optimizer step, over all
            replicas.
        reference_batch_size: Integer > 0. Batch size the rates were tuned
            for. Defaults to `32` (the paper's).
        rule: `"linear"` or `"sqrt"`. Defaults to `"linear"`.

    Returns:
        A float > 0.
    """
    for name, value in (
        ("global_batch_size", global_batch_size),
        ("reference_batch_size", reference_batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if rule not in SCALING_RULES:
        raise ValueError(f"`rule` must be one of {SCALING_RULES}. Received: rule={rule!r}")
    ratio = global_batch_size / reference_batch_size
    return ratio if rule == "linear" else math.sqrt(ratio)


def scale_plan_for_batch_size(
    plan, global_batch_size, *, reference_batch_size=PAPER_BATCH_SIZE, rule="linear"
):
    """A copy of a `RefinePlan` with every learning rate scaled for `global_batch_size`.

    The period, rollback and decay schedule are unchanged (they count
    epochs, not steps); the backbone, head, kept-block and period-2 head
    rates are all multiplied by `batch_size_scale(...)`. Off by default: a
    `RollbackRefine` given an unscaled plan uses the paper's rates whatever
    the number of replicas.

    Example:

    ```python
    strategy = tf.distribute.MirroredStrategy()
    global_batch = 32 * strategy.num_replicas_in_sync
    plan = scale_plan_for_batch_size(RefinePlan(period_epochs=40), global_batch)
    model.fit(train_ds.batch(global_batch), epochs=160,
              callbacks=[RollbackRefine(partition, plan=plan)])
    ```

    Args:
        plan: `RefinePlan` with rates tuned at `reference_batch_size`.
        global_batch_size: Integer > 0. Images per optimizer step, over all
            replicas.
        reference_batch_size: Integer > 0. Defaults to `32`.
        rule: `"linear"` or `"sqrt"`. Defaults to `"linear"`.

    Returns:
        A new `RefinePlan`.
    """
    if not isinstance(plan, RefinePlan):
        raise ValueError(f"`plan` must be a RefinePlan. Received: plan={plan!r}")
    scale = batch_size_scale(
        global_batch_size, reference_batch_size=reference_batch_size, rule=rule
    )
    # Every other field (plateau rule, kept blocks, schedule) carries over as it is.
    return dataclasses.replace(
        plan, **{name: getattr(plan, name) * scale for name in LEARNING_RATE_FIELDS}
    )
