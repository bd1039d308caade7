"""The bad-input table: one test per row, each checking the error type and that the message names the culprit.

Rows whose test lives in another file (checkpoints, snapshots, NaN) name that file.

| row | public API | expected | test |
| --- | --- | --- | --- |
| missing dataset folder | `data.read_market1501` | `DatasetLayoutError` naming the folder | `test_missing_dataset_folder` |
| empty dataset folder | `data.read_market1501` | `DatasetLayoutError` naming the folder and the missing split folders | `test_empty_dataset_folder` |
| empty split folder | `data.read_market1501` | `DatasetLayoutError` naming the split folder | `test_empty_split_folder` |
| unparsable file name | `data.read_market1501` | `ValueError` naming the file | `test_unparsable_file_name` |
| zero-byte / non-image / truncated file | `data.make_train_dataset` | `BadImageError` listing each path and why | `test_zero_byte_non_image_and_truncated_files` |
| corrupt image data | `data.make_eval_dataset(image_check="decode")` | `BadImageError` naming the file | `test_corrupt_image_data` |
| grey or RGBA image | `data.make_eval_dataset` | no error: converted to 3 channels, like PIL's `convert("RGB")` | `test_grey_and_rgba_images_become_three_channels` |
| some query ids not in the gallery | `metrics.ranking_scores` | `UserWarning` counting the skipped queries | `test_query_ids_not_in_the_gallery` |
| no query id in the gallery | `metrics.ranking_scores` | `ValueError` naming the query ids | `test_no_query_id_in_the_gallery` |
| partition missing a variable | `BlockPartition` | `ValueError` naming the variable | `test_partition_that_misses_a_variable` |
| partition counting a variable twice | `BlockPartition` | `ValueError` naming the variable and both groups | `test_partition_that_counts_a_variable_twice` |
| weights file of another architecture | `models.load_weights_strict` | `ValueError` naming the file, the model and the mismatches | `test_weights_file_of_another_architecture` |
| torchvision checkpoint with missing keys | `models.load_torchvision_weights` | `ValueError` naming the file and the missing keys | `test_torchvision_checkpoint_with_missing_keys` |
| metric input with NaN | `metrics.ranking_scores` | `ValueError` naming `distances` and the rows | `test_metric_input_with_nan` |
| metric inputs of mismatched lengths | `metrics.ranking_scores` | `ValueError` naming the argument | `test_metric_inputs_of_mismatched_lengths` |
| negative epochs | `RefinePlan` | `ValueError` echoing the value | `test_negative_epochs` |
| periods that do not divide the schedule | `RefinePlan.resolve` | `ValueError` naming `epochs` and the period boundaries | `test_periods_that_do_not_divide_the_schedule` |
| truncated or corrupt pre-trained snapshot | `PretrainedSnapshot.load` | `ValueError` naming the file (and the damaged arrays) | `pretrained_snapshot_test.py::test_truncated_file_is_reported_by_path`, `::test_corrupted_array_is_reported_by_path_and_name` |
| truncated, corrupt or missing run checkpoint | `RunCheckpoint` | `UserWarning` naming the file; the previous checkpoint is used | `callbacks_run_checkpoint_test.py::test_damaged_newest_checkpoint_is_named_and_the_previous_one_is_used` |
| run checkpoint of another architecture | `RunCheckpoint` | `ValueError` naming the file and the model | `callbacks_run_checkpoint_test.py::test_checkpoint_of_another_architecture_is_reported_by_path` |
| disk full while checkpointing | `RunCheckpoint`, `PretrainedSnapshot.save` | `OSError` (ENOSPC) naming the file; the previous file intact | `fault_injection_test.py::test_disk_full_while_checkpointing_keeps_the_previous_checkpoint_and_names_the_file` |
| NaN or infinite loss | `NanGuard` | `FloatingPointError` naming the epoch, the step and the last good checkpoint | `fault_injection_test.py::test_nan_loss_stops_at_once_naming_epoch_step_and_last_good_checkpoint` |
| camera 0 in a Market-1501 file name (`c0`) | `data.read_market1501` | `ValueError` naming the file and the first camera number | `test_camera_zero_in_a_market1501_file_name` |
| misspelt config field (`--config.model.arch`) | `experiments.main` | `ConfigError` naming the field and the closest valid one | `test_misspelt_config_field_on_the_command_line` |
| misspelt second method | `experiments.train.run_experiment` | `ConfigError` naming the method and the closest one, before anything trains or is written | `test_misspelt_second_method_is_reported_before_anything_trains` |
| `keep_block:` of a block the backbone has not | `experiments.train.run_experiment` | `ConfigError` naming the block and the blocks | `test_keep_block_of_a_block_the_backbone_has_not` |
| `decay_epochs` longer than the period | `experiments.train.run_experiment` | `ConfigError` naming both fields | `test_decay_epochs_longer_than_the_period` |
| unknown dataset name | `experiments.train.run_experiment` | `ConfigError` naming the value and the closest name | `test_unknown_dataset_name` |
| rerun of a work dir with another config | `experiments.train.run_experiment` | `ConfigMismatchError` naming every differing field with both values, nothing written; `--start_over` to start over | `test_rerun_of_a_work_dir_with_another_config` |
| `--start_over` on a work dir of another config | `experiments.train.run_experiment` | refused without it (`ConfigMismatchError`); with it the contents are deleted and the new config recorded | `test_start_over_replaces_the_run_of_another_config` |
| second process on a work dir in use | `experiments.train.run_experiment` | `WorkDirBusyError` at once, naming the work dir and the holder's pid | `test_second_process_on_a_locked_work_dir` |
| cut last line of `epochs.jsonl` | `experiments.report.read_history` | no error: the cut line is ignored, and dropped before the rerun appends | `test_cut_last_line_of_the_epoch_log` |
| half-written `finished.json` of an older version | `experiments.train.run_experiment` | warning naming the file; the method is trained again | `test_half_written_result_file_of_an_older_run` |
| partial or changed synthetic dataset | `experiments` (synthetic data) | verification names the file; the dataset is written again (temp folder, then rename) | `test_partial_or_changed_synthetic_dataset` |
| truncated cached pre-training file | `experiments.pretrain` | warning naming the file; pre-trained again | `test_truncated_cached_pretraining_file` |
| pre-trained snapshot without manifest | `PretrainedSnapshot.load` | `ValueError` naming the file and `rebuild_manifest` | `pretrained_snapshot_test.py::test_file_without_manifest_is_refused_until_its_manifest_is_rebuilt` |
| snapshot of other weights of the same architecture at resume | `experiments.train.run_experiment` | `ValueError` naming the snapshot and `config.model.weights` | `test_snapshot_of_other_weights_of_the_same_architecture_at_resume` |
| JPEG corrupt inside (valid header and end marker) | `experiments.train.run_experiment` | `BadImageError` naming the file (every image is decoded only after TensorFlow's error) | `test_image_corrupt_inside_stops_training_naming_the_file` |
| weights made non-finite by a step whose loss was finite | `NanGuard` | `FloatingPointError` naming the weight and the epoch, before evaluation and checkpoint | `test_weights_made_non_finite_by_a_step_whose_loss_was_finite` |
| disk too full for a checkpoint | `RunCheckpoint`, `PretrainedSnapshot.save` | `OSError` (ENOSPC) naming the file before h5py writes anything | `test_disk_full_before_a_weights_file_is_written` |
| disk full reported by h5py mid-write | `RunCheckpoint` | `OSError` (ENOSPC) naming the file, temp file removed | `test_disk_full_reported_by_h5py_as_a_runtime_error` |
"""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from testing_models import TINY_BLOCKS
from testing_models import tiny_cnn
from testing_models import tiny_partition

from experiments import config_checks
from experiments import pretrain
from experiments import train
from experiments import workdir as workdir_lib
from experiments.configs import smoke
from keras_rollback import BlockPartition
from keras_rollback import RefinePlan
from keras_rollback import _atomic_files
from keras_rollback import data as data_lib
from keras_rollback import metrics
from keras_rollback import models
from keras_rollback.callbacks.nan_guard import NanGuard
from keras_rollback.pretrained_snapshot import PretrainedSnapshot

MARKET_SPLITS = ("bounding_box_train", "query", "bounding_box_test")


def _market_tree(root, names=("0002_c1s1_000451_03.jpg",)):
    for split in MARKET_SPLITS:
        (root / split).mkdir(parents=True)
        for name in names:
            _write_image(root / split / name)
    return root


def _write_image(path, channels=3):
    pixels = np.full((8, 4, channels), 128, dtype=np.uint8)
    encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
    path.write_bytes(encode(pixels).numpy())


def _records(paths):
    return [data_lib.ReIDRecord(str(path), 0, 0) for path in paths]


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(data_lib.DatasetLayoutError, match=re.escape(str(tmp_path / "absent"))):
        data_lib.read_market1501(tmp_path / "absent")


def test_empty_dataset_folder(tmp_path):
    with pytest.raises(
        data_lib.DatasetLayoutError,
        match=rf"{re.escape(str(tmp_path))}.*missing.*bounding_box_train",
    ):
        data_lib.read_market1501(tmp_path)


def test_empty_split_folder(tmp_path):
    _market_tree(tmp_path)
    for image in (tmp_path / "query").iterdir():
        image.unlink()
    with pytest.raises(
        data_lib.DatasetLayoutError, match=rf"Empty split.*{re.escape(str(tmp_path / 'query'))}"
    ):
        data_lib.read_market1501(tmp_path)


def test_unparsable_file_name(tmp_path):
    _market_tree(tmp_path)
    _write_image(tmp_path / "query" / "person2_camera1.jpg")
    with pytest.raises(ValueError, match=r"Cannot parse .*query/person2_camera1\.jpg"):
        data_lib.read_market1501(tmp_path)


def test_zero_byte_non_image_and_truncated_files(tmp_path):
    good = tmp_path / "good.jpg"
    _write_image(good)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(data_lib.BadImageError) as info:
        data_lib.make_train_dataset(
            _records([good, empty, text, truncated]), transform=data_lib.ImageTransform((8, 4))
        )
    message = str(info.value)
    assert f"{empty}: empty file" in message
    assert f"{text}: not a JPEG or PNG" in message
    assert f"{truncated}: truncated JPEG" in message
    assert str(good) + ":" not in message


def test_corrupt_image_data(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    _write_image(corrupt)
    data = bytearray(corrupt.read_bytes())
    data[20:-2] = b"\x00" * (len(data) - 22)  # Header and end marker intact, content destroyed.
    corrupt.write_bytes(bytes(data))
    with pytest.raises(
        data_lib.BadImageError, match=rf"{re.escape(str(corrupt))}: cannot be decoded"
    ):
        data_lib.make_eval_dataset(
            _records([corrupt]), transform=data_lib.ImageTransform((8, 4)), image_check="decode"
        )


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_rgba_images_become_three_channels(tmp_path, channels):
    path = tmp_path / f"{channels}.png"
    _write_image(path, channels=channels)
    batch = next(
        data_lib.make_eval_dataset(
            _records([path]), transform=data_lib.ImageTransform((8, 4))
        ).as_numpy_iterator()
    )
    assert batch["image"].shape == (1, 8, 4, 3)


def test_query_ids_not_in_the_gallery():
    distances = np.array([[0.1, 0.2], [0.3, 0.4]], dtype="float32")
    with pytest.warns(UserWarning, match="1 of 2 queries have no valid match"):
        scores = metrics.ranking_scores(distances, [1, 9], [1, 2], [0, 0], [1, 1])
    assert scores.num_valid_queries == 1


def test_no_query_id_in_the_gallery():
    distances = np.array([[0.1, 0.2], [0.3, 0.4]], dtype="float32")
    with pytest.raises(ValueError, match=r"No query has a valid match.*Query ids: \[8, 9\]"):
        metrics.ranking_scores(distances, [8, 9], [1, 2], [0, 0], [1, 1])


def test_partition_that_misses_a_variable():
    model = tiny_cnn()
    blocks = {name: prefix for name, prefix in TINY_BLOCKS.items() if name != "B4"}
    with pytest.raises(ValueError, match=r"match no rule: \['b4_conv/kernel'"):
        BlockPartition(model, blocks=blocks, head="fc/")


def test_partition_that_counts_a_variable_twice():
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"'fc/kernel' .* several groups: \['B4', 'head'\]"):
        BlockPartition(model, blocks={**TINY_BLOCKS, "B4": ["b4_", "fc/"]}, head="fc/")


def test_weights_file_of_another_architecture(tmp_path):
    path = tmp_path / "grey.weights.h5"
    tiny_cnn(input_shape=(8, 8, 1)).save_weights(path)
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(path))}.*does not fit model 'tiny_cnn'.*with another shape",
    ):
        models.load_weights_strict(tiny_cnn(), path)


def test_torchvision_checkpoint_with_missing_keys(tmp_path):
    torch = pytest.importorskip("torch")
    backbone = models.keras_hub_resnet(
        "resnet18", input_shape=(32, 32, 3), widths=(64, 16, 16, 16), blocks=(1, 1, 1, 1)
    )
    names = models.torchvision_name_map(backbone)
    state = {}
    for weight in backbone.weights:
        value = keras.ops.convert_to_numpy(weight)
        state[names[weight.path]] = torch.from_numpy(
            np.transpose(value, (3, 2, 0, 1)) if value.ndim == 4 else value
        )
    del state["layer2.0.bn1.running_var"]
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(path))}.*1 missing: \['layer2\.0\.bn1\.running_var"
    ):
        models.load_torchvision_weights(backbone, path)


def test_metric_input_with_nan():
    distances = np.array([[0.1, np.nan], [0.3, 0.4]], dtype="float32")
    with pytest.raises(ValueError, match=r"`distances` contains non-finite values .* rows \[0, "):
        metrics.ranking_scores(distances, [1, 2], [1, 2], [0, 0], [1, 1])


def test_metric_inputs_of_mismatched_lengths():
    distances = np.zeros((2, 3), dtype="float32")
    with pytest.raises(
        ValueError, match="`gallery_pids` has 2 entries but there are 3 gallery items"
    ):
        metrics.ranking_scores(distances, [1, 2], [1, 2], [0, 0], [1, 1, 1])


def test_negative_epochs():
    with pytest.raises(ValueError, match="period_epochs=-40"):
        RefinePlan(period_epochs=-40)


def test_periods_that_do_not_divide_the_schedule():
    partition = tiny_partition(tiny_cnn())
    plan = RefinePlan(period_epochs=40, periods=4)
    with pytest.raises(ValueError, match=r"epochs=150 does not fit the plan.*\[40, 80, 120, 160\]"):
        plan.resolve(partition.block_names, partition.head_name, epochs=150)


def test_camera_zero_in_a_market1501_file_name(tmp_path):
    _market_tree(tmp_path)
    _write_image(tmp_path / "query" / "0002_c0s1_000451_03.jpg")
    with pytest.raises(
        ValueError, match=r"Invalid camera number 0 in .*query/0002_c0s1_000451_03\.jpg"
    ):
        data_lib.read_market1501(tmp_path)


def test_misspelt_config_field_on_the_command_line():
    argv = ["main", "--config=experiments/configs/smoke.py", "--config.model.arch=resnet5"]
    with pytest.raises(
        config_checks.ConfigError,
        match=r"--config\.model\.arch names no field .*Did you mean --config\.model\.\w+\?",
    ):
        config_checks.check_override_fields(argv, "experiments/configs/synthetic.py")


def test_misspelt_second_method_is_reported_before_anything_trains(tmp_path, monkeypatch):
    config = smoke.get_config()
    config.methods = ("rollback", "rolback")
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_run)
    with pytest.raises(
        config_checks.ConfigError,
        match=r"config\.methods: Unknown method 'rolback'.*Did you mean 'rollback'\?",
    ):
        train.run_experiment(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_keep_block_of_a_block_the_backbone_has_not():
    config = smoke.get_config()
    config.methods = ("keep_block:conv6_x",)
    with pytest.raises(
        config_checks.ConfigError, match=r"keep_block:conv6_x names no block of resnet18"
    ):
        config_checks.validate_config(config)


def test_decay_epochs_longer_than_the_period():
    config = smoke.get_config()
    config.plan.decay_epochs = 20
    with pytest.raises(
        config_checks.ConfigError,
        match=r"config\.plan\.decay_epochs=20 is longer than config\.plan\.period_epochs=1",
    ):
        config_checks.validate_config(config)


def test_unknown_dataset_name():
    config = smoke.get_config()
    config.dataset.name = "market1051"
    config.dataset.root = "/data/market"
    with pytest.raises(
        config_checks.ConfigError,
        match=r"config\.dataset\.name='market1051'.*Did you mean 'market1501'\?",
    ):
        config_checks.validate_config(config)


def test_unknown_optimizer_name_is_refused_before_training():
    config = smoke.get_config()
    config.optimizer_name = "adamW"
    with pytest.raises(
        config_checks.ConfigError,
        match=r"config\.optimizer_name='adamW'\. Did you mean 'adamw'\? Expected one of",
    ):
        config_checks.validate_config(config)


def test_rerun_of_a_work_dir_with_another_config(tmp_path, monkeypatch):
    config = smoke.get_config()
    with workdir_lib.locked(tmp_path):
        workdir_lib.record_or_check_config(config, str(tmp_path))
    recorded = (tmp_path / "config.json").read_text()
    changed = smoke.get_config()
    changed.seed = 1
    changed.plan.learning_rate = 0.05
    changed.methods = ("fine_tune",)  # Cannot change results: not a difference.
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_run)
    with pytest.raises(
        workdir_lib.ConfigMismatchError,
        match=r"(?s)differing fields:\n  plan\.learning_rate: 0\.01 .*, 0\.05 now\n  seed: 0 .*"
        r", 1 now\n.*--start_over",
    ):
        train.run_experiment(changed, str(tmp_path))
    assert (tmp_path / "config.json").read_text() == recorded
    assert sorted(os.listdir(tmp_path)) == [".lock", "config.json"]  # Nothing else written.


def test_start_over_replaces_the_run_of_another_config(tmp_path):
    workdir_lib.record_or_check_config(smoke.get_config(), str(tmp_path))
    (tmp_path / "rollback").mkdir()
    (tmp_path / "rollback" / "finished.json").write_text("[]")
    changed = smoke.get_config()
    changed.seed = 3
    with pytest.raises(workdir_lib.ConfigMismatchError, match=r"seed: 0 .*, 3 now"):
        workdir_lib.record_or_check_config(changed, str(tmp_path))
    workdir_lib.record_or_check_config(changed, str(tmp_path), start_over=True)
    assert sorted(os.listdir(tmp_path)) == ["config.json"]
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3


def test_second_process_on_a_locked_work_dir(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from experiments import workdir\n"
            "with workdir.locked(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.time()
        with (
            pytest.raises(
                workdir_lib.WorkDirBusyError,
                match=rf"{re.escape(str(tmp_path))}.*in use by another process \(pid {holder.pid},",
            ),
            workdir_lib.locked(str(tmp_path)),
        ):
            pass
        assert time.time() - started < 5
    finally:
        holder.kill()
        holder.wait()
    with workdir_lib.locked(str(tmp_path)):  # Free once the holder is gone.
        pass


def test_cut_last_line_of_the_epoch_log(tmp_path):
    path = tmp_path / "epochs.jsonl"
    path.write_text('{"epoch": 0, "loss": 1.5}\n{"epoch": 1, "lo')
    assert _atomic_files.read_json_lines(str(path)) == [{"epoch": 0, "loss": 1.5}]
    workdir_lib.truncate_json_lines(str(path), lambda record: True)
    _atomic_files.append_json_line(str(path), {"epoch": 1, "loss": 1.25})
    assert _atomic_files.read_json_lines(str(path))[-1] == {"epoch": 1, "loss": 1.25}


def test_half_written_result_file_of_an_older_run(tmp_path):
    path = tmp_path / "finished.json"
    path.write_text('[{"method": "rollback", "ep')
    assert workdir_lib.read_json(str(path)) is None  # The method is trained again.


def test_partial_or_changed_synthetic_dataset(tmp_path):
    arguments = dict(
        num_train_identities=2,
        num_test_identities=2,
        num_cameras=2,
        images_per_camera=2,
        num_distractors=1,
        num_junk=1,
        image_size=(32, 16),
        seed=0,
    )
    root = str(tmp_path / "synthetic")
    workdir_lib.synthetic_dataset(root, **arguments)
    image = sorted((tmp_path / "synthetic" / "query").iterdir())[0]
    original = image.read_bytes()
    image.write_bytes(original[: len(original) // 2])
    assert re.search(
        rf"{re.escape(str(image))}.*differs from its size and SHA-256",
        data_lib.verify_synthetic_market1501(root, **arguments),
    )
    workdir_lib.synthetic_dataset(root, **arguments)  # Written again, the same images.
    assert image.read_bytes() == original
    shutil.rmtree(tmp_path / "synthetic" / "query")
    assert "misses images" in data_lib.verify_synthetic_market1501(root)


def test_truncated_cached_pretraining_file(tmp_path):
    path = tmp_path / "resnet18-synthetic-source-0.weights.h5"
    tiny_cnn().save_weights(path)
    _atomic_files.write_json(
        str(path) + ".json",
        {"bytes": path.stat().st_size, "sha256": _atomic_files.sha256_of_file(path)},
    )
    assert pretrain._cache_problem(str(path)) is None
    path.write_bytes(path.read_bytes()[:100])
    assert "is truncated or damaged (100 bytes" in pretrain._cache_problem(str(path))
    (tmp_path / (path.name + ".json")).unlink()
    assert "no size and checksum record" in pretrain._cache_problem(str(path))


def test_snapshot_of_other_weights_of_the_same_architecture_at_resume(tmp_path):
    config = ml_collections.ConfigDict({"model": {"weights": "other.weights.h5"}})
    model = tiny_cnn()
    partition = tiny_partition(model)
    path = tmp_path / "pretrained.npz"
    PretrainedSnapshot.capture(tiny_cnn(seed=1), partition).save(path)
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(path))}.*differs from the weights "
        r"config\.model\.weights='other\.weights\.h5'.*--start_over",
    ):
        train._check_snapshot_of_these_weights(str(path), model, partition, config)
    PretrainedSnapshot.capture(model, partition).save(path)
    train._check_snapshot_of_these_weights(str(path), model, partition, config)


def test_image_corrupt_inside_stops_training_naming_the_file(tmp_path):
    names = ("0002_c1s1_000451_03.jpg", "0003_c2s1_000451_03.jpg")
    _market_tree(tmp_path, names=names)
    corrupt = tmp_path / "bounding_box_train" / names[1]
    data = bytearray(corrupt.read_bytes())
    data[20:-2] = b"\x00" * (len(data) - 22)  # Header and end marker intact: passes the check.
    corrupt.write_bytes(bytes(data))
    config = smoke.get_config()
    config.image_size = (8, 4)
    config.batch_size = 2
    task = train.ReIDTask(config, data_lib.read_market1501(tmp_path))
    batches, _ = task.make_train(start_epoch=0)
    with pytest.raises(tf.errors.InvalidArgumentError) as raw:
        next(iter(batches))
    with pytest.raises(
        data_lib.BadImageError, match=rf"{re.escape(str(corrupt))}: cannot be decoded"
    ):
        task.raise_if_images_are_bad(raw.value)


def test_weights_made_non_finite_by_a_step_whose_loss_was_finite():
    # Losses are computed before the update: the one step's loss is finite (about 1e10).
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    model.compile(
        optimizer=keras.optimizers.SGD(1e30),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = np.full((8, 4), 1e10, "float32"), np.arange(8) % 3
    with pytest.raises(
        FloatingPointError,
        match=r"Weight '.*fc/kernel' holds 12 non-finite values after the last step of epoch 1",
    ):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[NanGuard()])


def test_disk_full_before_a_weights_file_is_written(tmp_path):
    path = tmp_path / "epoch-000001.weights.h5"

    def write(tmp):
        raise AssertionError("nothing may be written when the disk cannot hold the file")

    with pytest.raises(OSError, match=rf"{re.escape(str(path))}.*No space left on device") as info:
        _atomic_files.atomic_write(path, write, expected_bytes=1 << 62)
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_disk_full_reported_by_h5py_as_a_runtime_error(tmp_path):
    path = tmp_path / "epoch-000001.weights.h5"

    def write(tmp):
        raise RuntimeError("Can't write data (file write failed: errno = 28, error message = x)")

    with pytest.raises(OSError, match=rf"{re.escape(str(path))}.*No space left on device") as info:
        _atomic_files.atomic_write(path, write)
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def _must_not_run(*args, **kwargs):
    raise AssertionError("a method was trained although the config is invalid")
