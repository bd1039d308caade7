"""Entry point of every `pytest_test`: runs pytest on the test file given as argument.

Bazel starts it in the test's runfiles tree (the workspace root), so `keras_rollback`,
`experiments` and the test helpers import from there, and `tests/conftest.py` and
`pyproject.toml` configure pytest as they do outside Bazel.
"""

import os
import sys

import pytest

if __name__ == "__main__":
    arguments = ["-q", "-p", "no:cacheprovider", *sys.argv[1:]]
    # Bazel collects per-test-case results from the JUnit XML it asks for.
    if os.environ.get("XML_OUTPUT_FILE"):
        arguments.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    sys.exit(pytest.main(arguments))
