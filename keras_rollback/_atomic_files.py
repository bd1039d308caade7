"""Crash-safe file writes, JSON-lines logs and checksums: every file the library and the
experiments write goes through here."""

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile

TEMP_MARKER = ".tmp-"


def atomic_write(path, write, suffix="", expected_bytes=0):
    """Writes `path` through `write(temp_path)`, then renames the temp file over `path`.

    A reader sees the old file or the complete new one, never a partial one:
    the temp file lives in the same directory (so the rename is atomic), is
    flushed to disk before the rename, and is removed if writing fails. An
    `OSError` (disk full, permissions), or another error carrying an errno in its
    message (h5py's `RuntimeError` on a full disk), is raised as an `OSError` with that
    errno naming `path`.

    Args:
        path: Final file path.
        write: Callable writing the whole file to the path it is given.
        suffix: Ending the temp file's name must have (writers such as
            `model.save_weights` check it).
        expected_bytes: About how large the file will be. If the disk has less free
            space, `OSError(ENOSPC)` is raised before anything is written: h5py, which
            `save_weights` uses, cannot be relied on to fail cleanly when the disk fills
            up during its write (it may crash the process on exit). Defaults to `0`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = f".{os.path.basename(path)}{TEMP_MARKER}"
    for name in os.listdir(directory):  # Left behind by a writer that was killed.
        if name.startswith(prefix):
            os.unlink(os.path.join(directory, name))
    if expected_bytes and shutil.disk_usage(directory).free < expected_bytes:
        raise OSError(
            errno.ENOSPC,
            f"Cannot write {path!r}: {os.strerror(errno.ENOSPC)} (about {expected_bytes} bytes "
            f"needed, {shutil.disk_usage(directory).free} free)",
        )
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        code = e.errno if isinstance(e, OSError) else _errno_in_message(e)
        if code is not None:
            raise OSError(code, f"Cannot write {path!r}: {os.strerror(code)}") from e
        raise
    _fsync_directory(directory)


def _errno_in_message(error):
    """The errno an exception's message reports (h5py: "errno = 28"), or None."""
    match = re.search(r"errno = (\d+)", str(error))
    if match is None:
        return errno.ENOSPC if "No space left on device" in str(error) else None
    return int(match.group(1))


def write_text(path, text):
    """Writes `text` to `path` atomically (`atomic_write`)."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write, suffix=os.path.splitext(path)[1])


def write_json(path, value, **dump_options):
    """Writes `value` as JSON (and a newline) to `path` atomically; `dump_options` go to
    `json.dumps`."""
    write_text(path, json.dumps(value, **dump_options) + "\n")


def append_json_line(path, record):
    """Appends `record` to the JSON-lines file `path`: the whole line in one `write`, flushed
    and synced, so that a killed process leaves at most a cut last line (which
    `read_json_lines` skips)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_json_lines(path):
    """The records of a JSON-lines file up to its last complete line ([] if there is no file);
    a cut last line (a process killed while appending) is ignored."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            records.append(json.loads(line))
    return records


def sha256_of_file(path):
    """The SHA-256 of a file's bytes, as hex, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_temp_file(name):
    """Whether `name` is a temp file left behind by an `atomic_write` that was killed."""
    return name.startswith(".") and TEMP_MARKER in name


def _fsync(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_directory(directory):
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
