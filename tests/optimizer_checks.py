"""Runs a Keras optimizer through the phases the torch.optim comparisons use."""

import keras
import numpy as np


def run_keras_phases(phases, optimizer, initial, grads_per_step):
    """Weights after every step of `optimizer` applying `grads_per_step` to `initial`.

    Each phase (`rates`: one learning rate per variable, `reset`: whether the phase starts
    with a fresh optimizer state, `steps`) sets the base rate to the largest of its rates and
    the others as multipliers, as torch's param groups would hold them. A Keras optimizer
    without multipliers can only run phases with one rate for all variables, and no reset.
    """
    variables = [keras.Variable(w, name=f"w{i}") for i, w in enumerate(initial)]
    optimizer.build(variables)
    layerwise = hasattr(optimizer, "set_learning_rate_multipliers")
    history, step = [], 0
    for phase in phases:
        if not layerwise and (phase["reset"] or len(set(phase["rates"])) > 1):
            raise ValueError(f"{type(optimizer).__name__} has no per-variable rates or reset.")
        if phase["reset"]:
            optimizer.reset_state()
        peak = max(phase["rates"])
        optimizer.learning_rate = peak
        if layerwise:
            optimizer.set_learning_rate_multipliers(
                {v.path: r / peak for v, r in zip(variables, phase["rates"])}
            )
        for _ in range(phase["steps"]):
            optimizer.apply(
                [keras.ops.convert_to_tensor(g) for g in grads_per_step[step]], variables
            )
            history.append([keras.ops.convert_to_numpy(v).copy() for v in variables])
            step += 1
    return history


def max_difference(a, b):
    """Largest absolute difference between two histories of weight lists."""
    return max(float(np.max(np.abs(x - y))) for xs, ys in zip(a, b) for x, y in zip(xs, ys))
