"""Every use of private Keras API in keras-rollback, in one place.

Keras' public API does not yet cover a few things this library needs: the
functional graph walked by `ResolutionBlocks`, the epoch `fit` resumes from,
the optimizer hooks of a fused torch update, the TensorFlow trainer's
cross-worker reductions (fixed for `MultiWorkerMirroredStrategy`), and Keras'
own message printer
(which honours `keras.config.disable_interactive_logging`). Each is reached
only through this module, so a Keras upgrade that moves one breaks this file
alone; `tests/compat_test.py` checks every function against the installed
Keras.
"""

import functools

import keras

# --- Messages --------------------------------------------------------------------------------


def print_msg(message):
    """Prints `message` the way Keras' progress bars do (absl logging when interactive
    logging is disabled)."""
    from keras.src.utils import io_utils

    io_utils.print_msg(message)


# --- Model.fit -------------------------------------------------------------------------------


def set_fit_initial_epoch(model, epoch):
    """Makes the next `model.fit` start at `epoch` (None: at its `initial_epoch` argument).

    `keras.callbacks.BackupAndRestore` resumes a run the same way.
    """
    model._initial_epoch = epoch


def fit_initial_epoch(model):
    """The epoch that the next `model.fit` starts at, or None for its `initial_epoch`."""
    return getattr(model, "_initial_epoch", None)


# --- Functional graph ------------------------------------------------------------------------


def functional_graph(layer):
    """The functional graph of a functional or built Sequential model, else None.

    The graph is a `keras.Model` whose nodes `nodes_by_depth` lists.
    """
    if isinstance(layer, keras.Sequential):
        layer = getattr(layer, "_functional", None)
    if isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth"):
        return layer
    return None


def nodes_by_depth(graph):
    """Mapping from depth (0 = the outputs) to the graph's nodes at that depth."""
    return graph._nodes_by_depth


def fill_in_arguments(node, values):
    """A node's call arguments with each recorded tensor replaced by `values[id(tensor)]`.

    Returns:
        `(args, kwargs)` for `node.operation.compute_output_spec`.
    """
    return node.arguments.fill_in(values)


# --- Optimizers ------------------------------------------------------------------------------


def optimizer_trainable_variables(optimizer):
    """The variables a built optimizer was built with, in build order (slot order)."""
    return optimizer._trainable_variables


def optimizer_variable_index(optimizer, variable):
    """The slot index of `variable` in a built optimizer (its position at `build`)."""
    return optimizer._get_variable_index(variable)


def optimizer_decays_variable(optimizer, variable):
    """Whether a Keras optimizer's own (decoupled) `weight_decay` applies to `variable`,
    after its `exclude_from_weight_decay` rules."""
    if not optimizer.weight_decay:
        return False
    return optimizer._use_weight_decay(variable)


@functools.cache
def torch_parallel_optimizer():
    """Keras' base class of its fused torch optimizers (torch backend only).

    A subclass implements `_parallel_update_step(grads, variables,
    learning_rate)`, called once per step with every variable, under
    `torch.no_grad()`; Keras' own `SGD` on torch is such a subclass.
    """
    from keras.src.backend.torch.optimizers import torch_parallel_optimizer

    return torch_parallel_optimizer.TorchParallelOptimizer


def torch_device():
    """The torch device Keras places tensors on (torch backend only)."""
    from keras.src.backend.torch.core import get_device

    return get_device()


def device_name():
    """The device the active backend trains on, e.g. `"cpu:0"` or `"cuda:0"`.

    `keras.distribution.list_devices` lists devices, but on torch Keras trains on the one its
    private `get_device` picks.
    """
    if keras.backend.backend() == "torch":
        return str(torch_device())
    return str(keras.distribution.list_devices()[0])


# --- tf.distribute.MultiWorkerMirroredStrategy ------------------------------------------------


def fix_tensorflow_trainer_for_multi_worker_strategy():
    """Fixes Keras 3's TensorFlow trainer for `MultiWorkerMirroredStrategy` (two bugs).

    Keras 3 (checked up to 3.15) reduces across workers with `strategy.reduce("MEAN", ...,
    axis=0)`, which fails on the scalar metric values of every train/test step ("Invalid
    reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388), and
    reduces a whole nested data batch at once when `fit` builds the model, which
    `CollectiveAllReduce` cannot convert. Here the step's per-replica metric values are
    averaged over every replica of every worker (`axis=None`, what single-process
    `MirroredStrategy` does), and the build takes the shapes from this worker's first
    replica. Applied once; other strategies take Keras' own code.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_keras_rollback_patched", False):
        return
    import tensorflow as tf

    keras_reduce_per_replica = trainer.reduce_per_replica
    keras_maybe_symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values, strategy, reduction):
        if not trainer._collective_all_reduce_multi_worker(strategy) or reduction not in (
            "auto",
            "mean",
        ):
            return keras_reduce_per_replica(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda v: (
                strategy.reduce("MEAN", v, axis=None) if trainer._is_per_replica_instance(v) else v
            ),
            values,
        )

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not trainer._collective_all_reduce_multi_worker(strategy):
            return keras_maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0], next(batches)
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer._keras_rollback_patched = True
