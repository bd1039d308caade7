"""keras-rollback: rolling-back refine-tuning for Keras 3."""

from keras_rollback.version import __version__
