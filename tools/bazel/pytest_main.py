"""Entry point of every `pytest_test`: runs pytest on the test file given as argument.

Bazel starts it in the test's runfiles tree (the workspace root), so `keras_rollback`,
`experiments` and the test helpers import from there, and `tests/conftest.py` and
`pyproject.toml` configure pytest as they do outside Bazel.
"""

import os
import pathlib
import sys

import pytest

if __name__ == "__main__":
    # Bazel adds an empty `tests/__init__.py` to the runfiles, which would make pytest import
    # the tests as the package `tests`; outside Bazel `tests/` is a plain directory whose
    # helpers (`testing_models`, `rollback_checks`) import by their bare names.
    sys.path.insert(0, str(pathlib.Path(sys.argv[1]).parent.absolute()))
    print(f"pytest_test {sys.argv[1]} on KERAS_BACKEND={os.environ.get('KERAS_BACKEND')}")
    arguments = ["-q", "-p", "no:cacheprovider", *sys.argv[1:]]
    # Bazel collects per-test-case results from the JUnit XML it asks for.
    if os.environ.get("XML_OUTPUT_FILE"):
        arguments.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    sys.exit(pytest.main(arguments))
