"""fit_verbosity: no progress-bar escape codes in a redirected log, bars on a terminal."""

import io
import re
import sys

import pytest
from testing_models import tiny_cnn
from testing_models import tiny_data
from testing_models import tiny_partition

from keras_rollback import LayerwiseSGD
from keras_rollback import refine_tune
from keras_rollback.fit_verbosity import fit_verbosity

# A Keras progress bar redraws itself with backspaces, carriage returns and ANSI codes.
REDRAW = re.compile(r"[\b\r\x1b]")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_is_a_progress_bar_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert fit_verbosity() == 1
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert fit_verbosity() == 2
    monkeypatch.setattr(sys, "stdout", None)  # pythonw: no standard output at all.
    assert fit_verbosity() == 2


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_explicit_values_pass_through(verbose):
    assert fit_verbosity(verbose) == verbose


@pytest.mark.parametrize("verbose", [True, 3, "1", None])
def test_bad_values_are_echoed(verbose):
    with pytest.raises(ValueError, match=re.escape(f"Received: verbose={verbose!r}")):
        fit_verbosity(verbose)


def test_refine_tune_to_a_file_writes_one_line_per_epoch(capfd):
    """Standard output is a file here (pytest's capture), as in `train.py > run.log`."""
    model = tiny_cnn()
    model.compile(optimizer=LayerwiseSGD(), loss="sparse_categorical_crossentropy")
    x, y = tiny_data(n=16)
    capfd.readouterr()
    refine_tune(model, tiny_partition(model), x, y=y, batch_size=4, periods=2, period_epochs=2)
    out = capfd.readouterr().out
    assert not REDRAW.search(out), repr(out)
    # Each epoch: Keras' "Epoch k/N" header and one summary line of the 4 steps.
    assert re.findall(r"^Epoch (\d)/\d$", out, flags=re.M) == ["1", "2", "3", "4"], out
    assert len(re.findall(r"^4/4 - .*loss: ", out, flags=re.M)) == 4, out
