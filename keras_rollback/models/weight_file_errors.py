"""The errors for a weights file the user named: missing, unreadable, or another model's."""

from keras_rollback.user_error import UserError


class WeightFileNotFoundError(UserError, FileNotFoundError):
    """A weights file given by path (a checkpoint, a `.weights.h5`) does not exist."""


class WeightFileError(UserError, ValueError):
    """A weights file that cannot be read, is of an unknown type, or does not fit the model.

    A pickled checkpoint that stores other objects than tensors, a truncated
    download, a file of another architecture or layout: the message names the file
    and what is wrong with it.
    """
