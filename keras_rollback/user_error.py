"""The base class of the errors that report a user's mistake, not a bug."""


class UserError(Exception):
    """A file, folder, flag or value the user gave is wrong; the message says which and how to fix it.

    The library's errors for bad inputs (a missing dataset folder, an unreadable
    checkpoint, missing pre-trained weights, a work dir used with another config...)
    derive from it as well as from the built-in type they always had (`ValueError`,
    `FileNotFoundError`, ...), so existing `except` clauses still catch them.
    The command-line tools print such an error as one paragraph, without a
    traceback, and exit with status 1 (`keras_rollback.command_line.run`);
    any other exception is a bug and keeps its traceback.

    Example:

    ```python
    class CheckpointError(UserError, ValueError):
        \"\"\"A weights file that cannot be read as a state_dict of tensors.\"\"\"
    ```
    """
