"""Run management of an experiment's work dir: one process, one config, no half-written file.

A work dir belongs to one resolved config. The first run records it in `config.json`; a rerun
with the same config resumes, a rerun with another config is refused before anything is
written (naming the differing fields) unless told to start over. An exclusive lock
(`fcntl.flock` on `.lock`) keeps a second process out while one runs. Every file is written
through `keras_rollback._atomic_files.atomic_write` (temp file, flush, rename), and the
per-epoch line log is read back up to its last complete line.
"""

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time

import keras
from absl import logging

from keras_rollback import _atomic_files
from keras_rollback.data import synthetic
from keras_rollback.user_error import UserError

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
# Config fields (and groups) that cannot change any result: a rerun may change them freely.
# `methods` only chooses which method folders are trained or read; each method's results
# depend on the other fields alone. `distribution` says which processes run the job (the
# global batch is `batch_size`); each process records its own `process_id`.
# `share_period_one` says whether a method trains period 1 itself or resumes from the shared
# one: resuming is bit-identical to training on.
RESULT_NEUTRAL_FIELDS = ("methods", "distribution", "share_period_one")


class WorkDirBusyError(UserError, RuntimeError):
    """Another process holds the work dir's lock."""


class ConfigMismatchError(UserError, ValueError):
    """A rerun's config differs from the one the work dir was started with."""


@contextlib.contextmanager
def locked(workdir):
    """Holds an exclusive lock on `workdir` (created if needed) for the `with` block.

    Raises:
        WorkDirBusyError: at once, naming the process that holds the lock, if another one does.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise WorkDirBusyError(
                f"Work dir {workdir!r} is in use by another process ({holder}); wait for it to "
                "end or choose another --workdir."
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def record_or_check_config(config, workdir, *, start_over=False):
    """Records `config` in a new work dir, or checks that a used one was started with it.

    Call with the lock held, before anything else is written. The record holds the
    resolved config and the Keras backend (a resumed run must use the one that wrote the
    checkpoints).

    Args:
        config: The resolved `ml_collections.ConfigDict`.
        workdir: The work dir.
        start_over: Bool. Delete everything the work dir holds (except its lock) and start
            a new run with `config`.

    Raises:
        ConfigMismatchError: if the work dir was started with another config; the message
            names every differing field with both values.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    record = {**json.loads(config.to_json()), "backend": keras.config.backend()}
    if start_over:
        for name in os.listdir(workdir):
            if name != LOCK_FILE:
                target = os.path.join(workdir, name)
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
    elif os.path.exists(path):
        try:
            with open(path) as f:
                recorded = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigMismatchError(
                f"Cannot read the recorded config {path!r} ({e}); pass --start_over to start "
                "this work dir over."
            ) from None
        recorded.setdefault("backend", None)
        differences = [
            f"{field}: {old!r} in this work dir, {new!r} now"
            for field, old, new in _differences(recorded, record)
            if not any(field == f or field.startswith(f"{f}.") for f in RESULT_NEUTRAL_FIELDS)
        ]
        if differences:
            raise ConfigMismatchError(
                f"Work dir {workdir!r} holds a run of another config; differing fields:\n  "
                + "\n  ".join(differences)
                + "\nRerun with the recorded config to resume it, choose another --workdir, "
                "or pass --start_over to delete its results and start over."
            )
        return
    # A work dir without a record is new, or a multi-process job's copy of the chief's state
    # (experiments/launch.py copies everything but the record).
    _atomic_files.write_json(path, record, indent=2)


def save_model(model, path):
    """`model.save(path)` atomically (temp file, flush, rename)."""
    _atomic_files.atomic_write(path, model.save, suffix=".keras")


def read_json(path):
    """The JSON value in `path`, or `None` if the file is absent or unreadable (a file of a
    killed writer of an older version: callers redo the work it records)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        logging.warning("Ignoring unreadable %s (cut by a killed run): redoing its work.", path)
        return None


def truncate_json_lines(path, keep):
    """Rewrites a JSON-lines file atomically with the records for which `keep(record)` holds.

    A resumed run calls it with the epochs its checkpoint covers, so that epochs trained
    again after a kill (and a cut last line) are not logged twice.
    """
    records = _atomic_files.read_json_lines(path)
    if os.path.exists(path):
        _atomic_files.write_text(path, "".join(json.dumps(r) + "\n" for r in records if keep(r)))


def synthetic_dataset(root, **arguments):
    """The folder of a verified synthetic Market-1501 dataset written with `arguments`.

    A folder that verifies against its manifest (every image's size and SHA-256, the
    arguments) is used as it is. Otherwise (absent, or left incomplete or changed) the
    dataset is written again into a temporary folder beside `root` and renamed to `root`
    once complete, so that a process killed while writing leaves no partial dataset that a
    rerun could train on. The generator is deterministic: the images are the same.
    """
    if os.path.exists(root):
        problem = synthetic.verify_synthetic_market1501(root, **arguments)
        if problem is None:
            return root
        logging.warning(
            "Synthetic dataset %s cannot be used (%s): writing it again.", root, problem
        )
        shutil.rmtree(root)
    parent, name = os.path.split(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    remove_temp_folders(parent, name)
    temp = tempfile.mkdtemp(dir=parent, prefix=f".{name}{_atomic_files.TEMP_MARKER}")
    logging.info("Writing a synthetic Market-1501-layout dataset to %s", root)
    synthetic.write_synthetic_market1501(temp, **arguments)
    os.rename(temp, root)
    return root


def remove_temp_folders(parent, name):
    """Deletes the temporary folders a killed writer of `parent/name` left behind (the work
    dir's lock guarantees no live writer)."""
    for entry in os.listdir(parent):
        if entry.startswith(f".{name}{_atomic_files.TEMP_MARKER}"):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _differences(old, new, prefix=""):
    for key in sorted(set(old) | set(new)):
        field = f"{prefix}{key}"
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, prefix=f"{field}.")
        elif a != b:
            yield field, a, b
