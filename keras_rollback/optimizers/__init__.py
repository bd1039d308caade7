"""Optimizers that give every variable its own learning rate and reset as torch's new ones."""

from keras_rollback.optimizers.layerwise_adamw import LayerwiseAdamW
from keras_rollback.optimizers.layerwise_sgd import LayerwiseSGD

__all__ = ["LayerwiseAdamW", "LayerwiseSGD"]
