"""`python -m experiments.main` that SIGKILLs itself at a chosen point of the experiment runner.

Usage: `python tests/experiment_fault_job.py --workdir=W [main's flags]`, with
`FAULT_KILL_POINTS` (comma-separated, in the order the run reaches them). Each run dies at
the first point not yet used and marks it used in `W.kills/` (beside the work dir, not in
it), so rerunning the same command until it exits with 0 passes every point. Points
(PHASE is `pretrain` or a method's folder name, E an epoch and S a step, 0-based):

* `image:N`: after the N-th image file written in this process (the synthetic dataset, then
  the pre-training source dataset);
* `write:PATTERN`: an atomic write of a path matching the glob PATTERN (relative to the work
  dir, e.g. `config.json`, `rollback/checkpoints/epoch-000001.weights.h5`) has cut its temp
  file to half, not renamed it yet;
* `rename:NAME`: a folder about to be renamed to NAME (the complete synthetic dataset);
* `fit_begin:PHASE`, `train_batch:PHASE:E:S`, `after_rollback:PHASE:E` (epoch E began, the
  rollback is done, no step taken), `epoch_end:PHASE:E` (after its checkpoint);
* `eval:PHASE:E`: epoch E's evaluation computed, not recorded;
* `line:PHASE:E`: half of epoch E's `epochs.jsonl` line written (no newline);
* `pictures:PHASE`: while the method's pictures are drawn.
"""

import fnmatch
import json
import os
import signal
import sys

import keras
import tensorflow as tf

from experiments import main as experiment_main
from experiments import train
from keras_rollback import _atomic_files
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint
from keras_rollback.evaluation import ReIDEvaluator


def _workdir(argv):
    return next(a.split("=", 1)[1] for a in argv if a.startswith("--workdir="))


def _kills_dir(workdir):
    return os.path.abspath(workdir).rstrip("/") + ".kills"


def active_kill_point(workdir):
    points = [p for p in os.environ.get("FAULT_KILL_POINTS", "").split(",") if p]
    kills = _kills_dir(workdir)
    used = set(os.listdir(kills)) if os.path.isdir(kills) else set()
    return next((p for p in points if _marker(p) not in used), None)


def _marker(point):
    return point.replace(":", "_").replace("/", "_")


def arm(workdir, point):
    """Installs the patches that kill the process at `point`."""
    kind, _, rest = point.partition(":")
    root = os.path.abspath(workdir)

    def die():
        os.makedirs(_kills_dir(workdir), exist_ok=True)
        with open(os.path.join(_kills_dir(workdir), _marker(point)), "w") as f:
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "image":
        real_write_file, count = tf.io.write_file, [0]

        def write_file(*args, **kwargs):
            result = real_write_file(*args, **kwargs)
            count[0] += 1
            if count[0] == int(rest):
                die()
            return result

        tf.io.write_file = write_file
    elif kind == "write":
        real_replace = os.replace

        def replace(src, dst):
            relative = os.path.relpath(os.path.abspath(os.fspath(dst)), root)
            if fnmatch.fnmatch(relative, rest):
                with open(src, "r+b") as f:
                    f.truncate(os.path.getsize(src) // 2)
                die()
            real_replace(src, dst)

        os.replace = replace
    elif kind == "rename":
        real_rename = os.rename

        def rename(src, dst):
            if os.path.basename(os.fspath(dst)) == rest:
                die()
            real_rename(src, dst)

        os.rename = rename
    elif kind == "eval":
        phase, epoch = rest.split(":")
        real_evaluate = ReIDEvaluator.evaluate

        def evaluate(self, model):
            logs = real_evaluate(self, model)
            if Killer.current == (phase, int(epoch)):
                die()
            return logs

        ReIDEvaluator.evaluate = evaluate
    elif kind == "line":
        phase, epoch = rest.split(":")
        # `epochs.jsonl` is written by the evaluation callback.
        real_append = _atomic_files.append_json_line

        def append(path, record):
            if os.path.basename(os.path.dirname(path)) == phase and record["epoch"] == int(epoch):
                with open(path, "a") as f:
                    text = json.dumps(record)
                    f.write(text[: len(text) // 2])
                die()
            real_append(path, record)

        _atomic_files.append_json_line = append
    elif kind == "pictures":
        real_plot = train.plot_cmc_curve

        def plot(values, path, **kwargs):
            if os.path.basename(os.path.dirname(path)) == rest:
                with open(path, "wb") as f:
                    f.write(b"\x89PNG half a picture")
                die()
            return real_plot(values, path, **kwargs)

        train.plot_cmc_curve = plot
    else:
        Killer.point = (kind, *rest.split(":"))
        Killer.die = staticmethod(die)
    _install_killer()


class Killer(keras.callbacks.Callback):
    """Kills at the callback points; appended last to every `fit` of the run."""

    point = None
    current = None  # (phase, epoch) of the fit running now.

    def __init__(self, phase):
        super().__init__()
        self.phase = phase

    def _at(self, kind, *numbers):
        return self.point == (kind, self.phase, *(str(n) for n in numbers))

    def on_train_begin(self, logs=None):
        if self.point == ("fit_begin", self.phase):
            self.die()

    def on_epoch_begin(self, epoch, logs=None):
        Killer.current = (self.phase, epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0 and self._at("after_rollback", Killer.current[1]):
            self.die()

    def on_train_batch_end(self, batch, logs=None):
        if self._at("train_batch", Killer.current[1], batch):
            self.die()

    def on_epoch_end(self, epoch, logs=None):
        if self._at("epoch_end", epoch):
            self.die()


def _install_killer():
    real_fit = keras.Model.fit

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        checkpoints = [c for c in callbacks if isinstance(c, RunCheckpoint)]
        phase = (
            os.path.basename(os.path.dirname(os.path.abspath(checkpoints[0].directory)))
            if checkpoints
            else "pretrain"
        )
        return real_fit(self, *args, callbacks=[*callbacks, Killer(phase)], **kwargs)

    keras.Model.fit = fit


if __name__ == "__main__":
    if keras.config.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()
    point = active_kill_point(_workdir(sys.argv))
    if point:
        arm(_workdir(sys.argv), point)
    from absl import app

    app.run(
        experiment_main.main,
        argv=sys.argv,
        flags_parser=experiment_main.config_checks.parse_flags_checking_config_fields,
    )
