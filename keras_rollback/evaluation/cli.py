r"""Command line of `evaluate_model_file`: a saved `.keras` model scored on a ReID dataset.

Usage:

```
keras-rollback-evaluate --model=run/rollback/model.keras --dataset.root=/data/Market-1501-v15.09.15
keras-rollback-evaluate --model=model.keras --preprocessing=torch --dataset.name=folder \
    --dataset.root=/data/my_reid --dataset.pattern='(?P<pid>\d+)/' --evaluation.rerank
python -m keras_rollback.evaluation --model=... --dataset.root=...
```

Prints rank-1/5/10, mAP and mINP (and the re-ranked row with `--evaluation.rerank`), and
writes `results.json`, `results.csv`, `cmc.png` and `ranked_list.png` into `--output_dir`
(default: `evaluation/` beside the model). A model written by an experiment
(`<workdir>/<method>/model.keras`) is evaluated with its run's settings (`config.json`):
image size, preprocessing, evaluation options and dataset; the flags override them.
"""

from absl import app
from absl import flags
from absl import logging

from keras_rollback import command_line
from keras_rollback.data import pipeline
from keras_rollback.evaluation import model_evaluation
from keras_rollback.metrics import ranking

# Flags named after the fields of `DEFAULT_SETTINGS` (and of the experiment configs).
DATASET_FLAGS = ("name", "root", "pattern", "skip_unparseable")
SPLIT_DIR_FLAGS = ("query", "gallery")
EVALUATION_FLAGS = ("flip", "ap_method", "rerank", "ranked_list_queries")


def define_flags():
    """Defines the CLI's flags (only when run as a script: importing defines none).

    Every setting but `--model` defaults to `None`: taken from the run's config when the
    model is in an experiment work dir, else from `DEFAULT_SETTINGS`.
    """
    flags.DEFINE_string("model", None, "Trained model saved with model.save(...keras).")
    flags.DEFINE_string(
        "output_dir",
        None,
        "Folder for results.json/.csv, cmc.png, ranked_list.png; default: "
        "evaluation/ beside the model.",
    )
    flags.DEFINE_enum(
        "dataset.name",
        None,
        list(model_evaluation.DATASET_NAMES),
        "Dataset reader; 'folder': query and gallery folders parsed by --dataset.pattern. "
        "Default: the run's, else market1501.",
    )
    flags.DEFINE_string("dataset.root", None, "Dataset folder. Default: the run's.")
    flags.DEFINE_string(
        "dataset.pattern",
        None,
        "Folder datasets: regex with a named group pid (and camid if the names carry "
        "cameras) matched at the start of each image's path below its split folder.",
    )
    for split in SPLIT_DIR_FLAGS:
        flags.DEFINE_string(
            f"dataset.split_dirs.{split}", None, f"Folder datasets: the {split} folder below root."
        )
    flags.DEFINE_bool(
        "dataset.skip_unparseable", None, "Folder datasets: skip names the pattern misses."
    )
    flags.DEFINE_list(
        "image_size", None, "height,width the model was trained at; default: its input size."
    )
    flags.DEFINE_enum(
        "preprocessing",
        None,
        list(pipeline.PREPROCESSING_MODES),
        "Normalisation the weights expect (models.backbone_preprocessing of the backbone); "
        "'none' when the model normalises its input itself. Default: the run's.",
    )
    flags.DEFINE_enum("interpolation", None, list(pipeline.INTERPOLATIONS), "Resize method.")
    flags.DEFINE_integer("batch_size", None, "Images per batch.", lower_bound=1)
    flags.DEFINE_bool("evaluation.flip", None, "Flip test-time augmentation (default: on).")
    flags.DEFINE_enum(
        "evaluation.ap_method", None, list(ranking.AP_METHODS), "AP convention (trapezoidal)."
    )
    flags.DEFINE_bool("evaluation.rerank", None, "Also score k-reciprocal re-ranking.")
    flags.DEFINE_integer(
        "evaluation.ranked_list_queries", None, "Rows of ranked_list.png.", lower_bound=1
    )
    flags.mark_flag_as_required("model")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    results = model_evaluation.evaluate_model_file(
        flags.FLAGS.model, overrides_from_flags(flags.FLAGS), output_dir=flags.FLAGS.output_dir
    )
    print(model_evaluation.results_summary(results))


def overrides_from_flags(flag_values):
    """The settings given on the command line, as `evaluate_model_file`'s `overrides`."""

    def given(names, prefix):
        values = {name: flag_values[f"{prefix}{name}"].value for name in names}
        return {name: value for name, value in values.items() if value is not None}

    overrides = given(("preprocessing", "interpolation", "batch_size"), "")
    if flag_values.image_size is not None:
        try:
            overrides["image_size"] = [int(v) for v in flag_values.image_size]
        except ValueError:
            raise app.UsageError(
                f"--image_size must be height,width integers. Received: {flag_values.image_size}"
            ) from None
        if len(overrides["image_size"]) != 2 or min(overrides["image_size"]) < 1:
            raise app.UsageError(
                f"--image_size must be two positive integers, height,width. "
                f"Received: {flag_values.image_size}"
            )
    overrides["dataset"] = given(DATASET_FLAGS, "dataset.")
    overrides["dataset"]["split_dirs"] = given(SPLIT_DIR_FLAGS, "dataset.split_dirs.")
    overrides["evaluation"] = given(EVALUATION_FLAGS, "evaluation.")
    return overrides


def run():
    """Entry point of the CLI: defines the flags and runs `main`."""
    define_flags()
    command_line.run(main)
