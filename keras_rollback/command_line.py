"""Runs a command-line entry point: a user's mistake is one paragraph, a bug a traceback.

Every script of the project (`python -m experiments.main`, `keras-rollback-evaluate`,
`keras-rollback-export-features`, `keras-rollback-convert-torchvision`) starts through
`run`. absl already reports an unknown or misspelt flag in one line; `run` does the same
for the errors that derive from `UserError` (missing weights, a dataset folder laid out
otherwise, an unreadable checkpoint, a work dir in use or started with another config, a
bad export target...): `Error: <message>` on standard error and exit status 1. Setting the
environment variable `KERAS_ROLLBACK_DEBUG=1` shows their traceback too. Any other
exception is a bug, and keeps its traceback.
"""

import functools
import os
import sys

from absl import app

from keras_rollback.user_error import UserError

DEBUG_ENVIRONMENT_VARIABLE = "KERAS_ROLLBACK_DEBUG"
EXIT_STATUS = 1


def run(main, *, flags_parser=None):
    """`absl.app.run(main)`, reporting a `UserError` as one paragraph and exit status 1.

    Args:
        main: Callable taking `argv`. The script's `main`.
        flags_parser: Callable or None. Passed to `absl.app.run`; `None` keeps absl's
            default parser. Defaults to `None`.
    """
    kwargs = {} if flags_parser is None else {"flags_parser": flags_parser}
    app.run(reporting_user_errors(main), **kwargs)


def reporting_user_errors(main):
    """Wraps `main(argv)` so that a `UserError` exits with its message, no traceback."""

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except UserError as e:
            if debug_requested():
                raise
            sys.stderr.write(user_error_paragraph(e))
            sys.stderr.flush()
            sys.exit(EXIT_STATUS)

    return wrapped


def user_error_paragraph(error):
    """The text a command prints for `error`: its message and how to see the traceback."""
    return (
        f"Error: {error}\n(Set {DEBUG_ENVIRONMENT_VARIABLE}=1 to see where the error was raised.)\n"
    )


def debug_requested():
    """Whether `KERAS_ROLLBACK_DEBUG` asks for tracebacks (any value but '', '0', 'false')."""
    value = os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "")
    return value.strip().lower() not in ("", "0", "false", "no")
