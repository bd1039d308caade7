"""Tests for keras_rollback.command_line: a user's mistake is one paragraph, a bug a traceback.

The table of mistakes tried from the command line (each row one subprocess, exit status 1,
`Error: ...` or absl's `FATAL Flags parsing error: ...` on standard error, no traceback):

| mistake | command |
| --- | --- |
| misspelt flag | `python -m experiments.main --workdr=...` |
| misspelt config field | `python -m experiments.main --config.dataset.rot=...` |
| work dir started with another config | `python -m experiments.main --workdir=<used>` |
| work dir in use by another process | `python -m experiments.main --workdir=<locked>` |
| missing dataset folder | `--config.dataset.name=market1501 --config.dataset.root=<none>` |
| dataset folder laid out otherwise | `--config.dataset.root=<folder without the splits>` |
| missing pre-trained weights, offline | `--config.model.weights=torchvision_v1` (empty cache) |
| unreadable checkpoint | `keras-rollback-convert-torchvision --input=<garbage>.pth` |
| not a torchvision checkpoint | `keras-rollback-convert-torchvision --input=<other keys>.safetensors` |
| bad export target | `keras-rollback-export-features --output=features.txt --format=onnx` |
| missing model file | `keras-rollback-export-features --model=<none>.keras` |
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from experiments import workdir as workdir_lib
from experiments.configs import synthetic
from keras_rollback import UserError
from keras_rollback import command_line

REPO = pathlib.Path(__file__).resolve().parents[1]
# The commands start TensorFlow whatever the backend: one backend's run checks them all.
only_on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="command-line errors do not depend on the backend; checked on TensorFlow",
)


class _PermissionMistake(UserError, ValueError):
    """A user's mistake, for the wrapper tests."""


def test_user_error_is_one_paragraph_and_exit_status_1(capsys, monkeypatch):
    monkeypatch.delenv(command_line.DEBUG_ENVIRONMENT_VARIABLE, raising=False)

    def main(argv):
        raise _PermissionMistake("The folder '/data' is read-only: choose another --workdir.")

    with pytest.raises(SystemExit) as exit_info:
        command_line.reporting_user_errors(main)(["prog"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: The folder '/data' is read-only: choose another --workdir.\n")
    assert "KERAS_ROLLBACK_DEBUG=1" in err and "Traceback" not in err


def test_debug_switch_shows_the_traceback(monkeypatch):
    monkeypatch.setenv(command_line.DEBUG_ENVIRONMENT_VARIABLE, "1")

    def main(argv):
        raise _PermissionMistake("read-only")

    with pytest.raises(_PermissionMistake, match="read-only"):
        command_line.reporting_user_errors(main)(["prog"])


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("1", True), ("yes", True)])
def test_debug_switch_values(monkeypatch, value, expected):
    monkeypatch.setenv(command_line.DEBUG_ENVIRONMENT_VARIABLE, value)
    assert command_line.debug_requested() is expected


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.delenv(command_line.DEBUG_ENVIRONMENT_VARIABLE, raising=False)

    def main(argv):
        raise KeyError("a bug, not a mistake")

    with pytest.raises(KeyError):
        command_line.reporting_user_errors(main)(["prog"])


def run_command(args, *, env=None, cwd=REPO):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    environment.pop(command_line.DEBUG_ENVIRONMENT_VARIABLE, None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_paragraph(result, *expected):
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]


@only_on_tensorflow
def test_misspelt_flag_and_config_field(tmp_path):
    result = run_command(["-m", "experiments.main", f"--workdr={tmp_path}"])
    assert_one_paragraph(result, "Unknown command line flag 'workdr'", "workdir")
    result = run_command(
        ["-m", "experiments.main", f"--workdir={tmp_path}", "--config.dataset.rot=/data"]
    )
    assert_one_paragraph(
        result, "--config.dataset.rot names no field", "Did you mean --config.dataset.root?"
    )


@only_on_tensorflow
def test_work_dir_of_another_config_and_work_dir_in_use(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    config = synthetic.get_config()
    config.seed += 1
    workdir_lib.record_or_check_config(config, str(used))
    before = (used / workdir_lib.CONFIG_FILE).read_text()
    result = run_command(["-m", "experiments.main", f"--workdir={used}"])
    assert_one_paragraph(result, "Error: Work dir", "holds a run of another config", "seed:")
    assert (used / workdir_lib.CONFIG_FILE).read_text() == before
    assert sorted(p.name for p in used.iterdir()) == [".lock", workdir_lib.CONFIG_FILE]

    busy = tmp_path / "busy"
    with workdir_lib.locked(str(busy)):
        result = run_command(["-m", "experiments.main", f"--workdir={busy}"])
    assert_one_paragraph(result, "Error: Work dir", "is in use by another process")


@only_on_tensorflow
def test_missing_and_malformed_dataset(tmp_path):
    dataset = ["--config=experiments/configs/smoke.py", "--config.dataset.name=market1501"]
    result = run_command(
        ["-m", "experiments.main", f"--workdir={tmp_path / 'a'}", *dataset,
         f"--config.dataset.root={tmp_path / 'none'}"]
    )  # fmt: skip
    assert_one_paragraph(result, "Error: Dataset folder not found", "bounding_box_train/")
    (tmp_path / "other" / "images").mkdir(parents=True)
    result = run_command(
        ["-m", "experiments.main", f"--workdir={tmp_path / 'b'}", *dataset,
         f"--config.dataset.root={tmp_path / 'other'}"]
    )  # fmt: skip
    assert_one_paragraph(result, "Error: Unexpected layout", "missing", "Found: ['images']")


@only_on_tensorflow
def test_missing_weights_offline(tmp_path, mini_market1501):
    result = run_command(
        ["-m", "experiments.main", f"--workdir={tmp_path / 'w'}",
         "--config=experiments/configs/table2.py:market1501",
         f"--config.dataset.root={mini_market1501}"],
        env={"KERAS_ROLLBACK_HOME": str(tmp_path / "home"), "KERAS_ROLLBACK_OFFLINE": "1"},
    )  # fmt: skip
    assert_one_paragraph(result, "Error: Pre-trained weights file 'resnet50-0676ba61.pth'")


@only_on_tensorflow
def test_unreadable_and_foreign_checkpoints(tmp_path):
    from safetensors.numpy import save_file

    garbage = tmp_path / "resnet18.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(1000))
    convert = ["-m", "keras_rollback.models.convert_torchvision", "--arch=resnet18"]
    output = f"--output={tmp_path / 'out.weights.h5'}"
    result = run_command([*convert, f"--input={garbage}", output])
    assert_one_paragraph(result, "is not a readable torch checkpoint")
    foreign = tmp_path / "vit.safetensors"
    save_file({"blocks.0.attn.qkv.weight": np.zeros((6, 2), np.float32)}, str(foreign))
    result = run_command([*convert, f"--input={foreign}", output])
    assert_one_paragraph(result, "does not fit model", "nothing was loaded")
    assert not (tmp_path / "out.weights.h5").exists()


@only_on_tensorflow
def test_bad_export_target_and_missing_model(tmp_path):
    export = ["-m", "keras_rollback.export", "--preprocessing=torch"]
    result = run_command(
        [*export, f"--model={tmp_path / 'm.keras'}", f"--output={tmp_path / 'f.txt'}",
         "--format=onnx"]
    )  # fmt: skip
    assert_one_paragraph(result, "An ONNX export is a file ending in '.onnx'")
    result = run_command(
        [*export, f"--model={tmp_path / 'm.keras'}", f"--output={tmp_path / 'f.onnx'}",
         "--format=onnx"]
    )  # fmt: skip
    assert_one_paragraph(result, "Error: Model file not found")
    result = run_command(
        [*export, f"--model={tmp_path / 'm.keras'}", f"--output={tmp_path / 'no' / 'saved'}"]
    )
    assert_one_paragraph(result, "does not exist. Create it first.")


@only_on_tensorflow
def test_debug_switch_from_the_command_line(tmp_path):
    result = run_command(
        ["-m", "keras_rollback.export", "--preprocessing=torch",
         f"--model={tmp_path / 'm.keras'}", f"--output={tmp_path / 'f.onnx'}", "--format=onnx"],
        env={command_line.DEBUG_ENVIRONMENT_VARIABLE: "1"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ModelFileError" in result.stderr
