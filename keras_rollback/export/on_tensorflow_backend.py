"""Runs export work that only TensorFlow does, whichever Keras backend this process runs."""

import importlib
import json
import os
import subprocess
import sys

import keras


def call_on_tensorflow_backend(module, function, **kwargs):
    """Calls `module.function(**kwargs)` with Keras on the TensorFlow backend.

    For work only TensorFlow does (SavedModel and ONNX export). In this process when it
    runs the TensorFlow backend; otherwise in a child Python process started with
    `KERAS_BACKEND=tensorflow` (Keras cannot switch backends in a process), which gets
    the keyword arguments as JSON and whose error output is raised here.

    Args:
        module: String. Importable module name.
        function: String. Function of `module`.
        **kwargs: JSON-serialisable keyword arguments.
    """
    if keras.backend.backend() == "tensorflow":
        getattr(importlib.import_module(module), function)(**kwargs)
        return
    # The folder holding the `keras_rollback` package (this file is keras_rollback/export/...).
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    script = (
        "import importlib, json, sys; "
        f"getattr(importlib.import_module({module!r}), {function!r})(**json.load(sys.stdin))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(kwargs),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(
            f"{module}.{function} failed on the TensorFlow backend (child process, exit "
            f"{result.returncode}):\n{result.stderr[-4000:]}"
        )
