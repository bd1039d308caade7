"""Loads a trained model saved with `model.save("....keras")`, naming the file on failure."""

import os
import zipfile

import keras

from keras_rollback.user_error import UserError


class ModelFileError(UserError, ValueError):
    """A `.keras` model file that is missing, of another type, or cannot be loaded."""


def load_model_file(path):
    """Loads the `.keras` file at `path` (`safe_mode=True`, not compiled).

    Args:
        path: String or path-like. A file written by `model.save(path)`, e.g. an
            experiment's `<workdir>/<method>/model.keras`.

    Returns:
        The `keras.Model`.

    Raises:
        ModelFileError: naming the file, if it does not exist, does not end in `.keras`,
            or cannot be loaded (a truncated file, another program's zip file, a custom
            layer that is not registered).
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ModelFileError(
            f"Expected a Keras model file ending in '.keras' (written by model.save). "
            f"Received: {path!r}."
        )
    if not os.path.isfile(path):
        raise ModelFileError(f"Model file not found: {path!r}.")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"Cannot load the model file {path!r}: {reason}") from e
