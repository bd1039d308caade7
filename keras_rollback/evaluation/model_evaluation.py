"""Evaluates a trained model on a ReID dataset's query and gallery: scores, files, pictures.

`evaluate_model_on_dataset` scores a `keras.Model` on a `ReIDDataset` exactly as an
experiment evaluates at a period end (flip test-time augmentation, L2-normalised features,
the Market-1501 protocol, optional k-reciprocal re-ranking) and writes `results.json`,
`results.csv`, `cmc.png` and `ranked_list.png`. `evaluate_model_file` is the
`keras-rollback-evaluate` command: it loads a `.keras` file, takes its settings from the
flags, else from the experiment run that wrote the model, else from the defaults, and reads
the dataset.
"""

import copy
import csv
import io
import json
import os
import pathlib
import re
from typing import Any

import keras
from absl import logging

from keras_rollback import _atomic_files
from keras_rollback.data import pipeline
from keras_rollback.data import readers
from keras_rollback.data import reid_dataset
from keras_rollback.evaluation import visualization
from keras_rollback.evaluation.reid_evaluator import ReIDEvaluator
from keras_rollback.metrics import distance
from keras_rollback.metrics import reranking
from keras_rollback.models import backbones
from keras_rollback.models import bnneck_model
from keras_rollback.models import reid_model
from keras_rollback.models.model_file import load_model_file
from keras_rollback.user_error import UserError

RANKS = (1, 5, 10)
MAX_RANK = 50  # Length of the CMC curve drawn and recorded, as the experiments'.
METRIC = "euclidean"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CMC_PICTURE = "cmc.png"
RANKED_LIST_PICTURE = "ranked_list.png"
OUTPUT_SUBDIR = "evaluation"  # Default output folder, beside the model file.
RUN_CONFIG_FILE = "config.json"  # What an experiment's work dir records, above `<method>/`.
FOLDER_DATASET = "folder"
DATASET_NAMES = (*readers.READERS, FOLDER_DATASET)
JUNK_PIDS = (-1,)  # Dropped from folder datasets, as `read_reid_folders` does.
# What the command uses when neither a flag nor the run's config gives a setting.
DEFAULT_SETTINGS: dict[str, Any] = {
    "dataset": {
        "name": "market1501",
        "root": "",
        "pattern": "",
        "split_dirs": {"query": "query", "gallery": "gallery"},
        "skip_unparseable": False,
    },
    "image_size": None,  # The model's input size.
    "preprocessing": None,  # Required: from a flag or the run's config.
    "interpolation": "bicubic",
    "batch_size": 32,
    "evaluation": {
        "flip": True,
        "ap_method": "trapezoidal",
        "rerank": False,
        "ranked_list_queries": 8,
    },
}


class ModelInputError(UserError, ValueError):
    """What a model's input needs is not met or not known: RGB images, their size, their preprocessing."""


def evaluation_feature_model(model):
    """The model giving the evaluation feature of a trained ReID model.

    A `build_bnneck_model` model gives its feature after the BNNeck, a `build_reid_model`
    model its pooled backbone feature (the paper's test feature, not the bottleneck); any
    other model is its own feature model (its output is the feature).

    Args:
        model: `keras.Model`.

    Returns:
        A `keras.Model` sharing `model`'s weights, from images to features.
    """
    if any(layer.name == bnneck_model.TRAINING_OUTPUT for layer in model.layers):
        return bnneck_model.build_bnneck_feature_model(model)
    try:
        pooled = model.get_layer(reid_model.POOLED_FEATURE)
    except ValueError:
        return model
    if model.outputs and model.outputs[0] is pooled.output:
        return model
    return reid_model.build_feature_model(model)


def evaluation_image_size(model, image_size=None):
    """The `(height, width)` to resize the images to for `model`, checked against its input.

    Args:
        model: `keras.Model` taking channels-last RGB images `[B, H, W, 3]`.
        image_size: Tuple `(height, width)` or None. The size the model was trained at;
            `None` takes the model's fixed input size. Defaults to `None`.

    Returns:
        A tuple of two ints.

    Raises:
        ModelInputError: if the model's input is not `[B, H, W, 3]`, its fixed size differs
            from `image_size`, or its size is free and `image_size` is `None`.
    """
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ModelInputError(
            f"Model {model.name!r} takes inputs of shape {shape}, but the evaluation feeds it "
            "RGB images [batch, height, width, 3] (channels last). Evaluate a model whose input "
            "is (height, width, 3)."
        )
    if None not in shape[1:3]:
        fixed = (int(shape[1]), int(shape[2]))
        if image_size is not None and tuple(image_size) != fixed:
            raise ModelInputError(
                f"Model {model.name!r} takes {fixed[0]}x{fixed[1]} images, but "
                f"image_size={tuple(image_size)} was asked for. Leave image_size out to use "
                "the model's own size."
            )
        return fixed
    if image_size is None:
        raise ModelInputError(
            f"Model {model.name!r} takes images of any size: give image_size=(height, width) "
            "(--image_size=height,width), the size it was trained at."
        )
    return tuple(image_size)


def evaluate_model_on_dataset(
    model,
    dataset,
    *,
    preprocessing,
    image_size=None,
    interpolation="bicubic",
    batch_size=32,
    flip=True,
    ap_method="trapezoidal",
    rerank=False,
    ranked_list_queries=8,
    output_dir=None,
    metadata=None,
):
    """Scores a trained model on the query and gallery of a ReID dataset, as the experiments do.

    The images go through `make_eval_dataset` (resize, normalisation), the model's
    evaluation feature (`evaluation_feature_model`) with flip test-time augmentation and L2
    normalisation, and `ReIDEvaluator` (Market-1501 protocol; without camera ids only the
    query image itself is junk). With `rerank`, the k-reciprocal re-ranked scores are
    computed beside the plain ones from the same features. With `output_dir`, the results
    are written there atomically: `results.json` (settings, scores, the CMC curve),
    `results.csv` (one row per ranking), `cmc.png` and `ranked_list.png` (the first
    queries and their top 10, in the re-ranked order with `rerank`).

    Example:

    ```python
    dataset = read_market1501("/data/Market-1501-v15.09.15")
    results = evaluate_model_on_dataset(
        model, dataset, preprocessing="torch", output_dir="/tmp/evaluation"
    )
    results["scores"]["plain"]["mAP"]
    ```

    Args:
        model: `keras.Model`. A `build_reid_model` or `build_bnneck_model` model, or a model
            from channels-last RGB images to features.
        dataset: `ReIDDataset`. Its `query` and `gallery` are evaluated.
        preprocessing: String. The normalisation the weights expect (see
            `normalize_images` and `backbone_preprocessing`).
        image_size: Tuple `(height, width)` or None. See `evaluation_image_size`.
            Defaults to `None`.
        interpolation: String. The pipeline's resize method. Defaults to `"bicubic"`.
        batch_size: Int. Images per batch. Defaults to `32`.
        flip: Bool. Flip test-time augmentation. Defaults to `True`.
        ap_method: String. `"trapezoidal"` or `"non_interpolated"`, see `ranking_scores`.
            Defaults to `"trapezoidal"`.
        rerank: Bool. Also score the k-reciprocal re-ranked distances. Defaults to `False`.
        ranked_list_queries: Int. Queries (rows) of the ranked-list picture. Defaults to `8`.
        output_dir: Path-like or None. Where the files are written; `None` writes none.
            Defaults to `None`.
        metadata: Dict or None. More JSON-serialisable entries for the results (the model
            file, where the settings came from...). Defaults to `None`.

    Returns:
        A JSON-serialisable dict: `"scores"` (`{"plain": {"rank1", "rank5", "rank10",
        "mAP", "mINP"}}`, plus `"re-ranked"` with `rerank`), `"cmc"` (the curves, rank 1
        to 50), `"num_queries"`, `"num_valid_queries"`, `"num_gallery"`, `"feature_dim"`,
        `"settings"`, `"dataset"`, `"model"`, `"backend"`, the `metadata` and, with
        `output_dir`, `"files"`.

    Raises:
        ModelInputError: if the model's input does not fit (see `evaluation_image_size`).
        DatasetLayoutError: if no query identity is in the gallery.
        BadImageError: if an image cannot be read.
        ValueError: if another argument is invalid.
    """
    if (
        isinstance(ranked_list_queries, bool)
        or not isinstance(ranked_list_queries, int)
        or ranked_list_queries < 1
    ):
        raise ValueError(
            f"Received: ranked_list_queries={ranked_list_queries!r}. Expected a positive integer."
        )
    feature_model = evaluation_feature_model(model)
    image_size = evaluation_image_size(feature_model, image_size)
    _check_query_ids_in_gallery(dataset)
    query_gallery_indices = _query_gallery_indices(dataset)
    transform = pipeline.ImageTransform(
        image_size=image_size, preprocessing=preprocessing, interpolation=interpolation
    )
    query, gallery = (
        pipeline.make_eval_dataset(records, transform=transform, batch_size=batch_size)
        for records in (dataset.query, dataset.gallery)
    )
    options = dict(
        ranks=RANKS,
        max_rank=MAX_RANK,
        metric=METRIC,
        ap_method=ap_method,
        flip=flip,
        query_gallery_indices=query_gallery_indices,
    )
    evaluator = ReIDEvaluator(query, gallery, **options)
    features = evaluator.extract(feature_model)
    rankings = {"plain": evaluator.score(*features)}
    if rerank:
        reranking_evaluator = ReIDEvaluator(query, gallery, rerank=True, **options)
        rankings["re-ranked"] = reranking_evaluator.score(*features)
    query_features, gallery_features = features
    results = {
        "scores": {name: scores.as_logs(ranks=RANKS) for name, scores in rankings.items()},
        "cmc": {name: scores.cmc.tolist() for name, scores in rankings.items()},
        "num_queries": len(dataset.query),
        "num_valid_queries": rankings["plain"].num_valid_queries,
        "num_gallery": len(dataset.gallery),
        "feature_dim": int(query_features["features"].shape[1]),
        "settings": {
            "image_size": list(image_size),
            "preprocessing": preprocessing,
            "interpolation": interpolation,
            "flip": flip,
            "metric": METRIC,
            "ap_method": ap_method,
            "rerank": rerank,
        },
        "dataset": {
            "name": dataset.name,
            "root": dataset.root,
            "camera_ids": dataset.has_camera_ids,
        },
        "model": model.name,
        "backend": keras.backend.backend(),
        **(metadata or {}),
    }
    if output_dir is not None:
        distances = (reranking.k_reciprocal_rerank if rerank else distance.pairwise_distance)(
            query_features["features"], gallery_features["features"], metric=METRIC
        )
        results["files"] = _write_results(
            results,
            distances,
            query_features,
            gallery_features,
            os.fspath(output_dir),
            ranked_list_queries=ranked_list_queries,
            query_gallery_indices=query_gallery_indices,
        )
    return results


def results_summary(results):
    """What `evaluate_model_on_dataset` found, as text: the evaluation and a table in percent."""
    settings, dataset = results["settings"], results["dataset"]
    model = results.get("model_file", results["model"])
    height, width = settings["image_size"]
    lines = [
        f"Model:    {model} ({results['feature_dim']}-D features, {results['backend']} backend)",
        f"Dataset:  {dataset['name']} at {dataset['root']}: {results['num_queries']} queries "
        f"({results['num_valid_queries']} with a true match), {results['num_gallery']} gallery "
        f"images, {'camera ids' if dataset['camera_ids'] else 'no camera ids'}",
        f"Settings: {height}x{width} {settings['interpolation']}, preprocessing "
        f"{settings['preprocessing']}, flip {'on' if settings['flip'] else 'off'}, "
        f"{settings['metric']} distance, {settings['ap_method']} AP"
        + (f" (run config {results['settings_from']})" if results.get("settings_from") else ""),
        "",
    ]
    columns = [f"rank-{rank}" for rank in RANKS] + ["mAP", "mINP"]
    keys = [f"rank{rank}" for rank in RANKS] + ["mAP", "mINP"]
    lines.append(f"{'ranking':<10}" + "".join(f"{name:>9}" for name in columns))
    for name, scores in results["scores"].items():
        lines.append(f"{name:<10}" + "".join(f"{100 * scores[key]:>9.2f}" for key in keys))
    if "files" in results:
        lines += [
            "",
            f"Written to {os.path.dirname(results['files'][RESULTS_JSON])}: "
            + ", ".join(results["files"]),
        ]
    return "\n".join(lines)


def evaluate_model_file(model_path, overrides=None, *, output_dir=None):
    """The `keras-rollback-evaluate` command: evaluates a `.keras` file on a ReID dataset.

    Each setting comes from `overrides` if given there, else from the experiment run that
    wrote the model (`run_settings`), else from `DEFAULT_SETTINGS`. The dataset is read
    (`dataset.name` a reader of `read_reid_dataset`, or `"folder"` for a query and a
    gallery folder below `dataset.root` whose paths `dataset.pattern` parses), the model
    loaded and `evaluate_model_on_dataset` run; the files go to `output_dir`.

    Example:

    ```python
    results = evaluate_model_file(
        "run/rollback/model.keras", {"dataset": {"root": "/data/Market-1501-v15.09.15"}}
    )
    print(results_summary(results))
    ```

    Args:
        model_path: Path-like. A model saved with `model.save("....keras")`.
        overrides: Nested dict or None, shaped as `DEFAULT_SETTINGS` (e.g.
            `{"dataset": {"root": ...}, "evaluation": {"rerank": True}}`). Defaults to
            `None`.
        output_dir: Path-like or None. `None`: an `evaluation` folder beside the model.
            Defaults to `None`.

    Returns:
        The dict of `evaluate_model_on_dataset`, with `"model_file"`, `"settings_from"`
        (the run config read, or None) and `"dataset_settings"`.

    Raises:
        ModelFileError: if the model file is missing, not `.keras`, or cannot be loaded.
        DatasetLayoutError: if the dataset folder is missing or laid out otherwise, or a
            file name does not parse.
        ModelInputError: if the model's input does not fit.
        BadImageError: if an image cannot be read.
    """
    model_path = os.fspath(model_path)
    run_config_path, from_run = run_settings(model_path)
    settings = _merged(_merged(DEFAULT_SETTINGS, from_run), overrides or {})
    model = load_model_file(model_path)
    if settings["preprocessing"] is None:
        raise ModelInputError(
            f"No preprocessing known for {model_path!r}: it is not in an experiment work dir "
            f"(no {RUN_CONFIG_FILE} above its folder). Pass --preprocessing, the normalisation "
            "its backbone's weights expect (torch for torchvision and keras-hub ResNets, caffe "
            "for keras.applications ResNets, tf for InceptionV3, none if the model normalises "
            "its input itself)."
        )
    dataset = read_evaluation_dataset(settings["dataset"])
    if output_dir is None:
        output_dir = os.path.join(os.path.dirname(os.path.abspath(model_path)), OUTPUT_SUBDIR)
    evaluation = settings["evaluation"]
    return evaluate_model_on_dataset(
        model,
        dataset,
        preprocessing=settings["preprocessing"],
        image_size=None if settings["image_size"] is None else tuple(settings["image_size"]),
        interpolation=settings["interpolation"],
        batch_size=settings["batch_size"],
        flip=evaluation["flip"],
        ap_method=evaluation["ap_method"],
        rerank=evaluation["rerank"],
        ranked_list_queries=evaluation["ranked_list_queries"],
        output_dir=output_dir,
        metadata={
            "model_file": os.path.abspath(model_path),
            "settings_from": run_config_path,
            "dataset_settings": _dataset_settings_used(settings["dataset"]),
        },
    )


def run_settings(model_path):
    """The settings an experiment run recorded for the model at `<workdir>/<method>/model.keras`.

    Reads `<workdir>/config.json`: the image size, the preprocessing of its backbone's
    weights, the evaluation options and (for ReID runs) the dataset.

    Returns:
        `(path, settings)`: the config file read and a nested dict shaped as
        `DEFAULT_SETTINGS`, or `(None, {})` when the model is not in a work dir.
    """
    workdir = os.path.dirname(os.path.dirname(os.path.abspath(os.fspath(model_path))))
    path = os.path.join(workdir, RUN_CONFIG_FILE)
    if not os.path.isfile(path):
        return None, {}
    try:
        with open(path) as f:
            config = json.load(f)
        settings = {
            "image_size": list(config["image_size"]),
            "preprocessing": backbones.backbone_preprocessing(
                config["model"]["backbone"], weights=config["model"]["weights"] or None
            ),
            "evaluation": {
                key: config["evaluation"][key]
                for key in DEFAULT_SETTINGS["evaluation"]
                if key in config["evaluation"]
            },
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        logging.warning("Ignoring the run config %s, which cannot be read: %s", path, e)
        return None, {}
    dataset = config.get("dataset", {})
    if config.get("task", "reid") == "reid" and dataset.get("name") in DATASET_NAMES:
        settings["dataset"] = {
            key: dataset[key] for key in DEFAULT_SETTINGS["dataset"] if key in dataset
        }
        settings["dataset"]["split_dirs"] = {
            split: directory
            for split, directory in dataset.get("split_dirs", {}).items()
            if split in ("query", "gallery")
        }
    elif dataset.get("name") == "synthetic":  # Written into the work dir by the run.
        settings["dataset"] = {
            "name": "market1501",
            "root": os.path.join(workdir, "synthetic-market1501"),
        }
    logging.info("Settings of the run that wrote %s read from %s", model_path, path)
    return path, settings


def read_evaluation_dataset(dataset_settings):
    """Reads the query and gallery of the dataset that `dataset_settings` describes.

    Args:
        dataset_settings: Dict shaped as `DEFAULT_SETTINGS["dataset"]`: `name` (a reader
            of `read_reid_dataset`, or `"folder"`), `root`, and for folder datasets
            `pattern` (a regex with a named group `pid`, optionally `camid`, matched at
            the start of each image's path below its split folder), `split_dirs` (the
            `query` and `gallery` folders below `root`; a train folder is not needed) and
            `skip_unparseable`.

    Returns:
        A `ReIDDataset` (for a folder dataset, its `train` is empty).

    Raises:
        DatasetLayoutError: if `root` is not given or not laid out as the dataset's, a
            split is empty, the pattern is not a valid one, or a file name does not parse.
    """
    name, root = dataset_settings["name"], dataset_settings["root"]
    if name not in DATASET_NAMES:
        raise reid_dataset.DatasetLayoutError(
            f"Unknown dataset. Received: name={name!r}. Expected one of {DATASET_NAMES}."
        )
    if not root:
        raise reid_dataset.DatasetLayoutError(
            f"No dataset folder given: pass --dataset.root, the folder of the {name} dataset."
        )
    if name != FOLDER_DATASET:
        return readers.read_reid_dataset(name, root)
    return _read_query_gallery_folders(
        root,
        dataset_settings["pattern"],
        dataset_settings["split_dirs"],
        skip_unparseable=dataset_settings["skip_unparseable"],
    )


def _read_query_gallery_folders(root, pattern, split_dirs, *, skip_unparseable):
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise reid_dataset.DatasetLayoutError(
            f"--dataset.pattern={pattern!r} is not a regular expression: {e}."
        ) from None
    if not pattern or "pid" not in regex.groupindex:
        raise reid_dataset.DatasetLayoutError(
            "A folder dataset needs --dataset.pattern, a regular expression with a named group "
            "`pid` (and `camid` if the names carry cameras), matched at the start of each "
            r"image's path below its split folder, e.g. '(?P<pid>\d+)_c(?P<camid>\d+)'. "
            f"Received: pattern={pattern!r}."
        )
    splits = ("query", "gallery")
    layout = "\n".join(
        f"  {root}/{split_dirs[split]}/  ({split} images, paths matching {pattern!r})"
        for split in splits
    )
    root = reid_dataset.check_dataset_root(root, [split_dirs[split] for split in splits], layout)
    records = {
        split: reid_dataset.drop_pids(
            reid_dataset.parse_file_names(
                pathlib.Path(root) / split_dirs[split],
                regex,
                first_camera_index=0,
                on_unparseable="skip" if skip_unparseable else "raise",
                recursive=True,
            ),
            JUNK_PIDS,
        )
        for split in splits
    }
    for split in splits:
        if not records[split]:
            raise reid_dataset.DatasetLayoutError(
                f"Empty split: {str(pathlib.Path(root) / split_dirs[split])!r} has no usable image."
            )
    dataset = reid_dataset.ReIDDataset(
        name=pathlib.Path(root).name,
        root=str(root),
        train=[],
        query=records["query"],
        gallery=records["gallery"],
    )
    return reid_dataset.log_dataset(dataset)


def _dataset_settings_used(dataset_settings):
    if dataset_settings["name"] == FOLDER_DATASET:
        return dataset_settings
    return {"name": dataset_settings["name"], "root": dataset_settings["root"]}


def _check_query_ids_in_gallery(dataset):
    if not {r.pid for r in dataset.query} & {r.pid for r in dataset.gallery}:
        raise reid_dataset.DatasetLayoutError(
            f"No query identity of {dataset.name} at {dataset.root!r} is in its gallery: there "
            "is nothing to find. Check that the query and gallery folders belong together."
        )


def _query_gallery_indices(dataset):
    try:
        return dataset.query_gallery_indices()
    except ValueError as e:
        raise reid_dataset.DatasetLayoutError(str(e)) from None


def _merged(base, overrides):
    """`base` with the values of `overrides` (nested dicts merged key by key)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _write_results(
    results,
    distances,
    query,
    gallery,
    output_dir,
    *,
    ranked_list_queries,
    query_gallery_indices,
):
    paths = {
        name: os.path.join(output_dir, name)
        for name in (RESULTS_JSON, RESULTS_CSV, CMC_PICTURE, RANKED_LIST_PICTURE)
    }
    title = f"CMC ({results['model']} on {results['dataset']['name']})"
    curves = results["cmc"] if len(results["cmc"]) > 1 else results["cmc"]["plain"]
    _atomic_files.atomic_write(
        paths[CMC_PICTURE],
        lambda tmp: visualization.plot_cmc_curve(curves, tmp, title=title),
        suffix=".png",
    )
    _atomic_files.atomic_write(
        paths[RANKED_LIST_PICTURE],
        lambda tmp: visualization.plot_ranked_list(
            distances,
            query["path"],
            gallery["path"],
            query["pid"],
            gallery["pid"],
            query["camid"],
            gallery["camid"],
            tmp,
            query_indices=range(min(ranked_list_queries, len(query["pid"]))),
            query_gallery_indices=query_gallery_indices,
        ),
        suffix=".png",
    )
    _atomic_files.write_text(paths[RESULTS_CSV], _results_csv(results))
    record = {**results, "files": paths}
    _atomic_files.write_text(paths[RESULTS_JSON], json.dumps(record, indent=1) + "\n")
    return paths


def _results_csv(results):
    keys = [f"rank{rank}" for rank in RANKS] + ["mAP", "mINP"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["ranking", *keys, "num_valid_queries", "num_gallery"])
    for name, scores in results["scores"].items():
        writer.writerow(
            [name, *(scores[key] for key in keys)]
            + [results["num_valid_queries"], results["num_gallery"]]
        )
    return text.getvalue()
