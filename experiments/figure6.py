"""`run_figure6`: the paper's Figure 6 from trained experiments, and a number it never had.

Figure 6 of Ro et al. (AAAI 2019) shows, on query images, the activation map of the last
feature block of a fine-tuned and of a rolled-back ResNet, side by side. Here the two models
are the `model.keras` files that `experiments.main` writes into an experiment's work dir
(`<workdir>/<method>/model.keras`), the maps are
`keras_rollback.evaluation.activation_maps.activation_maps`, and on the synthetic dataset,
where the generator knows which pixels it painted the person on, each map gets its
foreground share: the fraction of the map inside the person's mask. With several work dirs
(one per seed, or a study's work dir) the shares are summarised over images and over seeds.
"""

import json
import math
import os

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from scipy import stats

from experiments import recipes
from experiments import workdir as workdir_lib
from keras_rollback import _atomic_files
from keras_rollback import data as reid_data
from keras_rollback.data import synthetic
from keras_rollback.data.pipeline import read_image
from keras_rollback.evaluation.activation_maps import activation_maps
from keras_rollback.evaluation.activation_maps import coarse_activation_maps
from keras_rollback.evaluation.activation_maps import foreground_share
from keras_rollback.evaluation.activation_maps import last_feature_layer
from keras_rollback.evaluation.visualization import plot_activation_maps
from keras_rollback.models import load_model_file
from keras_rollback.user_error import UserError

PICTURE = "figure6.png"
RESULTS = "figure6.json"


class Figure6Error(UserError, ValueError):
    """The runs or images that Figure 6 is asked to use are missing or unusable."""


def run_figure6(config, workdir):
    """Draws Figure 6 for `config.figure6` and writes the foreground shares.

    Writes into `workdir`: `config.json` (the resolved config), `figure6.png` (the first
    run's shown queries: the image, then each method's map over it, with its share) and
    `figure6.json` (every image's share per method and run, the layer and its feature-map
    size, and the summary: per run the mean and 95% t-interval over images, the paired
    difference of the two methods, the person's mean area (the share of a uniform map);
    over runs the same over the runs' means). Logs a one-line summary.

    Returns:
        The `figure6.json` content (dict).
    """
    settings = config.figure6
    methods = tuple(settings.methods)
    if len(methods) < 1 or len(set(methods)) != len(methods):
        raise Figure6Error(
            f"config.figure6.methods must name distinct methods. Received: {methods!r}."
        )
    runs = expand_runs(settings.runs, methods)
    with workdir_lib.locked(workdir):
        _atomic_files.write_json(
            os.path.join(workdir, "config.json"), json.loads(config.to_json()), indent=2
        )
        results = [
            _one_run(settings, methods, run, workdir, picture=index == 0)
            for index, run in enumerate(runs)
        ]
        summary = summarise(results, methods)
        content = _finite_or_none(
            {
                "methods": list(methods),
                "layer": results[0]["layer"],
                "picture": os.path.join(workdir, PICTURE),
                "summary": summary,
                "runs": results,
            }
        )
        path = os.path.join(workdir, RESULTS)
        _atomic_files.write_json(path, content, indent=1)
    logging.info("%s", summary_line(summary, methods, results, workdir))
    return content


def expand_runs(runs, methods):
    """The experiment work dirs named by `runs` (comma-separated), a study's `seed-*` folders
    in place of its work dir."""
    names = [name.strip() for name in str(runs).split(",") if name.strip()]
    if not names:
        raise Figure6Error(
            "No trained runs given: set --config.figure6.runs to experiment work dirs "
            "(comma-separated, one per seed), each written by experiments.main with the "
            "methods of config.figure6.methods."
        )
    expanded = []
    for name in names:
        if not os.path.isdir(name):
            raise Figure6Error(f"config.figure6.runs names {name!r}, which is not a folder.")
        seeds = sorted(
            (entry for entry in os.listdir(name) if entry.startswith("seed-")),
            key=lambda entry: (len(entry), entry),
        )
        trained_here = any(os.path.isdir(os.path.join(name, _method_folder(m))) for m in methods)
        if seeds and not trained_here:
            expanded.extend(os.path.join(name, entry) for entry in seeds)
        else:
            expanded.append(name)
    return expanded


def summarise(results, methods):
    """Per run and over runs: mean and 95% t-interval of each method's share, of the paired
    difference of the last method and the first, and the person's area fraction."""
    summary = {"per_run": [], "over_runs": None}
    for result in results:
        images = result["images"]
        if not images or images[0]["share"] is None:
            summary["per_run"].append({"run": result["run"], "shares": None})
            continue
        shares = {m: [image["share"][m] for image in images] for m in methods}
        entry = {
            "run": result["run"],
            "seed": result["seed"],
            "shares": {m: interval(values) for m, values in shares.items()},
            "person_area": interval([image["person_area"] for image in images]),
        }
        if len(methods) > 1:
            entry["difference"] = interval(
                np.subtract(shares[methods[-1]], shares[methods[0]]),
            )
        summary["per_run"].append(entry)
    scored = [entry for entry in summary["per_run"] if entry["shares"] is not None]
    if len(scored) > 1:
        over = {
            "runs": len(scored),
            "shares": {m: interval([e["shares"][m]["mean"] for e in scored]) for m in methods},
            "person_area": interval([e["person_area"]["mean"] for e in scored]),
        }
        if len(methods) > 1:
            over["difference"] = interval([e["difference"]["mean"] for e in scored])
        summary["over_runs"] = over
    return summary


def interval(values):
    """`{"mean", "half_width", "n"}`: the mean and the half-width of its 95% t-interval
    (NaN for fewer than 2 values; NaN values are left out)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n < 2:
        return {"mean": float(values.mean()) if n else math.nan, "half_width": math.nan, "n": n}
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return {"mean": float(values.mean()), "half_width": float(half), "n": n}


def summary_line(summary, methods, results, workdir):
    """The one line logged at the end: shares (or why there are none) and the files."""
    files = f"wrote {os.path.join(workdir, PICTURE)} and {os.path.join(workdir, RESULTS)}"
    layer = f"layer {results[0]['layer']} ({'x'.join(map(str, results[0]['feature_map_size']))})"
    over = summary["over_runs"]
    level = over if over is not None else summary["per_run"][0]
    if level.get("shares") is None:
        return (
            f"Figure 6, {layer}, {len(results[0]['images'])} queries: no person masks for "
            f"these images (not a synthetic dataset), so no foreground share; {files}."
        )
    scope = (
        f"over {over['runs']} runs (t-interval over the runs' means)"
        if over is not None
        else f"over {level['shares'][methods[0]]['n']} queries of one run"
    )
    parts = [f"{m} {_percent(level['shares'][m])}" for m in methods]
    text = (
        f"Figure 6, {layer}: share of the activation on the person {scope}: "
        f"{', '.join(parts)} (person area {_percent(level['person_area'])})"
    )
    if "difference" in level:
        text += f"; {methods[-1]} - {methods[0]} {_percent(level['difference'], sign=True)}"
    return f"{text}; {files}."


def _percent(entry, sign=False):
    digits = 2 if sign else 1  # Differences are small: one more digit.
    value = round(100 * entry["mean"], digits) + 0.0  # No "-0.0".
    mean = f"{value:{'+' if sign else ''}.{digits}f}%"
    if not math.isfinite(entry["half_width"]):
        return mean
    return f"{mean} +- {100 * entry['half_width']:.{digits}f}"


def _one_run(settings, methods, run, workdir, *, picture):
    """Maps and shares of every method of one experiment work dir."""
    run_config = _recorded_config(run)
    transform = recipes.image_transform(run_config)
    records, dataset_root = _query_records(settings, run_config, run, workdir)
    if settings.max_images:
        records = records[: settings.max_images]
    paths = [str(record.path) for record in records]
    inputs = np.concatenate(
        [
            batch["image"]
            for batch in reid_data.make_eval_dataset(
                records, transform=transform, batch_size=settings.batch_size
            ).as_numpy_iterator()
        ]
    )
    masks = _person_masks(dataset_root, paths, transform.image_size)
    layer = settings.layer or None
    maps, layers = {}, {}
    for method in methods:
        model = load_model_file(_model_path(run, method))
        layers[method] = layer or last_feature_layer(model)
        maps[method] = activation_maps(
            model, inputs, layer=layers[method], batch_size=settings.batch_size
        )
        feature_map_size = _feature_map_size(model, layers[method], inputs[:1])
    if len(set(layers.values())) > 1:
        raise Figure6Error(
            f"The methods' models of {run!r} end their last block at different layers "
            f"({layers}): they are not the same architecture."
        )
    shares = None
    if masks is not None:
        shares = {method: foreground_share(maps[method], masks) for method in methods}
    if picture:
        shown = _evenly_spaced(len(records), settings.num_images)
        plot_activation_maps(
            np.stack([_display_image(paths[i], transform) for i in shown]),
            {method: maps[method][shown] for method in methods},
            os.path.join(workdir, PICTURE),
            shares=None if shares is None else {m: shares[m][shown] for m in methods},
            row_labels=[os.path.basename(paths[i]) for i in shown],
        )
    return {
        "run": run,
        "seed": run_config.get("seed"),
        "models": {method: _model_path(run, method) for method in methods},
        "dataset": dataset_root,
        "image_size": list(transform.image_size),
        "layer": layers[methods[0]],
        "feature_map_size": feature_map_size,
        "images": [
            {
                "path": path,
                "share": None if shares is None else {m: float(shares[m][i]) for m in methods},
                "person_area": None if masks is None else float(masks[i].mean()),
            }
            for i, path in enumerate(paths)
        ],
    }


def _recorded_config(run):
    path = os.path.join(run, workdir_lib.CONFIG_FILE)
    recorded = workdir_lib.read_json(path)
    if recorded is None:
        raise Figure6Error(
            f"{path!r} is missing or unreadable: {run!r} is not the work dir of an "
            "experiments.main run (its recorded config gives the image size and normalisation)."
        )
    recorded.pop("backend", None)
    return ml_collections.ConfigDict(recorded)


def _method_folder(method):
    return method.replace(":", "_")


def _model_path(run, method):
    path = os.path.join(run, _method_folder(method), "model.keras")
    if not os.path.isfile(path):
        raise Figure6Error(
            f"{path!r} does not exist: train method {method!r} in {run!r} first "
            f"(python -m experiments.main --config.methods=... --workdir={run}), or change "
            "config.figure6.methods."
        )
    return path


def _query_records(settings, run_config, run, workdir):
    """The query records and the folder they come from."""
    if settings.dataset_root:
        root = settings.dataset_root
        dataset = reid_data.read_reid_dataset(settings.dataset_name, root)
    elif run_config.dataset.name == "synthetic":
        arguments = {"seed": run_config.seed, **run_config.synthetic.to_dict()}
        arguments["image_size"] = tuple(arguments["image_size"])
        root = os.path.join(run, "synthetic-market1501")
        if synthetic.verify_synthetic_market1501(root, **arguments) is not None:
            # Deleted or changed since the run: the generator writes the same images again.
            root = workdir_lib.synthetic_dataset(
                os.path.join(workdir, f"synthetic-market1501-seed{run_config.seed}"),
                **arguments,
            )
        dataset = reid_data.read_market1501(root)
    elif run_config.get("task", "reid") == "reid" and run_config.dataset.name != "folder":
        root = run_config.dataset.root
        dataset = reid_data.read_reid_dataset(run_config.dataset.name, root)
    else:
        raise Figure6Error(
            f"Run {run!r} was trained on {run_config.dataset.name!r}: give the query images "
            "with --config.figure6.dataset_root (a Market-1501-layout folder)."
        )
    if not dataset.query:
        raise Figure6Error(f"The dataset at {root!r} has no query images.")
    return list(dataset.query), os.fspath(root)


def _person_masks(root, paths, image_size):
    """The person masks of the images at the model's input size, or None (not synthetic)."""
    if not os.path.exists(os.path.join(root, synthetic.MANIFEST)):
        return None
    masks = synthetic.synthetic_person_masks(root, paths)
    return np.stack([_resize_nearest(masks[path], image_size) for path in paths])


def _resize_nearest(mask, size):
    rows = np.minimum(
        ((np.arange(size[0]) + 0.5) * mask.shape[0] / size[0]).astype(int), mask.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(size[1]) + 0.5) * mask.shape[1] / size[1]).astype(int), mask.shape[1] - 1
    )
    return mask[rows][:, cols]


def _display_image(path, transform):
    """The image as the model saw it, before normalisation: decoded and resized, [0, 255]."""
    return transform.resize(read_image(tf.constant(path))).numpy()


def _feature_map_size(model, layer, batch):
    """`[h, w]` of the mapped layer's output (how coarse the map is before upsampling)."""
    return list(coarse_activation_maps(model, batch, layer=layer).shape[1:3])


def _evenly_spaced(count, wanted):
    """Up to `wanted` indices spread evenly over `range(count)` (first and last included)."""
    if count <= wanted:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, wanted)})


def _finite_or_none(value):
    """`value` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
