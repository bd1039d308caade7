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
| truncated, corrupt or missing run checkpoint | `RunCheckpoint` | `UserWarning` naming the file; the previous checkpoint is used | `run_checkpoint_test.py::test_damaged_newest_checkpoint_is_named_and_the_previous_one_is_used` |
| run checkpoint of another architecture | `RunCheckpoint` | `ValueError` naming the file and the model | `run_checkpoint_test.py::test_checkpoint_of_another_architecture_is_reported_by_path` |
| disk full while checkpointing | `RunCheckpoint`, `PretrainedSnapshot.save` | `OSError` (ENOSPC) naming the file; the previous file intact | `fault_injection_test.py::test_disk_full_while_checkpointing_keeps_the_previous_checkpoint_and_names_the_file` |
| NaN or infinite loss | `NanGuard` | `FloatingPointError` naming the epoch, the step and the last good checkpoint | `fault_injection_test.py::test_nan_loss_stops_at_once_naming_epoch_step_and_last_good_checkpoint` |
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from testing_models import TINY_BLOCKS
from testing_models import tiny_cnn
from testing_models import tiny_partition

from keras_rollback import BlockPartition
from keras_rollback import RefinePlan
from keras_rollback import data as data_lib
from keras_rollback import metrics
from keras_rollback import models

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
        data_lib.make_train_dataset(_records([good, empty, text, truncated]), image_size=(8, 4))
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
        data_lib.make_eval_dataset(_records([corrupt]), image_size=(8, 4), image_check="decode")


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_rgba_images_become_three_channels(tmp_path, channels):
    path = tmp_path / f"{channels}.png"
    _write_image(path, channels=channels)
    batch = next(
        data_lib.make_eval_dataset(_records([path]), image_size=(8, 4)).as_numpy_iterator()
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
