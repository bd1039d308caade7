"""`fit_verbosity`: progress bars on a terminal, one line per epoch in a file or pipe."""

import sys


def fit_verbosity(verbose="auto"):
    """The `verbose` argument for `model.fit`, resolving `"auto"` by where output goes.

    Keras resolves `verbose="auto"` to 1, and its progress bar redraws itself with
    backspaces, carriage returns and colour codes whenever Python runs on a posix system,
    even when standard output is a file or a pipe: a redirected log fills with escape
    codes. Here `"auto"` is 1 (a progress bar) only when standard output is a terminal,
    and 2 (one summary line per epoch, after Keras' `Epoch k/N` header) otherwise.

    Example:

    ```python
    model.fit(train_ds, epochs=3, verbose=fit_verbosity())
    ```

    Args:
        verbose: `"auto"`, 0, 1 or 2. 0 is silent, 1 a progress bar, 2 one line per
            epoch; `"auto"` chooses 1 or 2 as above. Defaults to `"auto"`.

    Returns:
        0, 1 or 2.
    """
    if isinstance(verbose, bool) or verbose not in ("auto", 0, 1, 2):
        raise ValueError(f"Received: verbose={verbose!r}. Expected 'auto', 0, 1 or 2.")
    if verbose != "auto":
        return verbose
    isatty = getattr(sys.stdout, "isatty", None)
    return 1 if isatty is not None and isatty() else 2
