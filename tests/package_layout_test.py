"""The package's shape: moved modules still import (with a warning), one logging choice."""

import ast
import importlib
import pathlib
import sys
import warnings

import pytest

import keras_rollback
from keras_rollback import _moved_modules

PACKAGE_DIR = pathlib.Path(keras_rollback.__file__).parent


@pytest.mark.parametrize("old_name", sorted(_moved_modules.MOVED_MODULES))
def test_old_module_path_is_the_new_module_with_a_deprecation_warning(old_name):
    new_name = _moved_modules.MOVED_MODULES[old_name]
    if new_name.endswith("torch_layerwise_sgd"):
        pytest.importorskip("torch")
    sys.modules.pop(old_name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module(old_name)
    assert old is importlib.import_module(new_name)
    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert any(old_name in m and new_name in m for m in messages), messages


def test_old_evaluation_callback_name_warns_and_is_the_callback():
    import keras_rollback.evaluation as evaluation

    with pytest.warns(DeprecationWarning, match="keras_rollback.callbacks"):
        callback_class = evaluation.ReIDEvaluationCallback
    assert callback_class is keras_rollback.ReIDEvaluationCallback
    with pytest.raises(AttributeError):
        evaluation.NoSuchName  # noqa: B018


def test_every_public_name_is_importable_from_the_root():
    for name in keras_rollback.__all__:
        assert getattr(keras_rollback, name) is not None, name


def test_no_old_module_file_is_left_at_its_old_path():
    for old_name in _moved_modules.MOVED_MODULES:
        relative = pathlib.Path(*old_name.split(".")[1:]).with_suffix(".py")
        assert not (PACKAGE_DIR / relative).exists(), relative


def test_the_library_logs_through_absl_only():
    """One logging choice, Keras' own (absl): no stdlib loggers, and no print except a
    command's result on its standard output (`cli.py`)."""
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "logging" for a in node.names):
                offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} import logging")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
                and path.name != "cli.py"
            ):
                offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} print()")
    assert not offenders, offenders
