"""`run_experiment`: every method of a config trained, evaluated per period, and reported."""

import contextlib
import copy
import functools
import json
import os

import keras
from absl import logging

from experiments import config_checks
from experiments import converged_period_one
from experiments import methods
from experiments import pretrain
from experiments import recipes
from experiments import report
from experiments import shared_period_one
from experiments import workdir as workdir_lib
from keras_rollback import BlockDiagnostics
from keras_rollback import BlockPartition
from keras_rollback import RollbackRefine
from keras_rollback import _atomic_files
from keras_rollback import compat
from keras_rollback import data as reid_data
from keras_rollback import evaluation
from keras_rollback.callbacks import ReIDEvaluationCallback
from keras_rollback.callbacks.nan_guard import NanGuard
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint
from keras_rollback.compat import device_name
from keras_rollback.evaluation import plot_cmc_curve
from keras_rollback.evaluation import plot_ranked_list
from keras_rollback.fit_verbosity import fit_verbosity
from keras_rollback.metrics import k_reciprocal_rerank
from keras_rollback.metrics import pairwise_distance
from keras_rollback.models import weights_provenance
from keras_rollback.onednn_bfloat16_error import raise_if_onednn_bfloat16
from keras_rollback.pretrained_snapshot import PretrainedSnapshot


def run_experiment(config, workdir, model_scope=contextlib.nullcontext, *, start_over=False):
    """Trains and evaluates each method of `config.methods`, then compares them.

    Writes into `workdir`: `config.json` (the resolved config), one folder per method
    (its `pretrained.npz` snapshot, `model.keras` (the trained model, for
    `keras-rollback-export-features`), `checkpoints/` for resuming, `epochs.jsonl` (every epoch's
    logs), `tensorboard/`, `cmc.png`, `ranked_list.png`), and `results.csv` / `results.json`
    (one row per method and evaluated epoch: period, epoch, loss, rank-1/5/10, mAP, mINP,
    wall time, backend, device), `curves.png` (loss and mAP per epoch, like the paper's
    Figure 4) and `comparison.md` (per-period table with the paper's published numbers).
    Methods that start with the same period 1 (rollback, base_cy, fine_tune, keep_block)
    branch from one training of it, `fine_tune/` (`config.share_period_one`, see
    `experiments/shared_period_one.py`). Running the same command again resumes an
    interrupted run. `model_scope` (a context
    factory) is where models are built and compiled: `MultiProcessJob.scope` in a multi-process
    job (see experiments/launch.py).

    The config is validated first; the work dir is locked against a second process, and
    refused if it holds a run of another config (see `experiments/workdir.py`; `start_over`
    deletes its contents first). Every file is written atomically.

    Returns:
        The result rows (list of dicts).
    """
    config_checks.validate_config(config)
    # Before anything trains (the synthetic pre-training included): bf16 that would turn NaN.
    raise_if_onednn_bfloat16(config.train.mixed_precision)
    with workdir_lib.locked(workdir):
        workdir_lib.record_or_check_config(config, workdir, start_over=start_over)
        keras.utils.set_random_seed(config.seed)
        task = _read_task(config, workdir)
        weights = _backbone_weights(config, workdir)
        provenance = _record_weights(config, weights, workdir)
        rows = []
        # Every method but the shared period 1 itself trains periods as long as period 1.
        methods_config = config
        if config.converged_period_one.enabled:
            epochs = _converged_period_one(config, task, weights, workdir, model_scope)
            methods_config = _with_period_epochs(config, epochs)
        for method in config.methods:
            method_dir = os.path.join(workdir, _folder(method))
            finished = os.path.join(method_dir, "finished.json")
            method_rows = workdir_lib.read_json(finished)
            if method_rows is not None:
                compat.print_msg(
                    f"{method}: finished in an earlier run, results read from {finished}."
                )
            else:
                with _dtype_policy(config.train.mixed_precision):
                    if (
                        config.share_period_one
                        and method != shared_period_one.SOURCE_METHOD
                        and shared_period_one.shares_period_one(method)
                    ):
                        source = _shared_period_one(config, task, weights, workdir, model_scope)
                        shared_period_one.branch(source, method_dir)
                    if method in methods.WEIGHT_MIXES:
                        method_rows = mix_and_evaluate(
                            methods_config, method, task, weights, method_dir, model_scope
                        )
                    else:
                        method_rows = train_and_evaluate(
                            methods_config, method, task, weights, method_dir, model_scope
                        )
                _atomic_files.write_json(finished, method_rows)
            rows.extend(method_rows)
        for row in rows:
            row.update(report.weights_columns(provenance))
        report.write_results(rows, workdir)
        report.plot_curves(rows, workdir)
        report.plot_drift(config, workdir)
        table = report.comparison_table(rows, config) + "\n\n" + report.weights_note(provenance)
        if config.task == "reid":
            table += "\n\n" + report.how_to_read(rows, len(task.dataset.query))
        _atomic_files.write_text(os.path.join(workdir, "comparison.md"), table + "\n")
        compat.print_msg(table)
        return rows


def _shared_period_one(config, task, weights, workdir, model_scope):
    """The folder of the shared period 1: `fine_tune`'s, trained first if it is not yet.

    Its results are reported only when `fine_tune` is one of `config.methods`.
    """
    source = os.path.join(workdir, _folder(shared_period_one.SOURCE_METHOD))
    finished = os.path.join(source, "finished.json")
    if workdir_lib.read_json(finished) is None:
        compat.print_msg(f"Period 1, shared by the methods that start with it: {source}")
        rows = train_and_evaluate(
            config, shared_period_one.SOURCE_METHOD, task, weights, source, model_scope
        )
        _atomic_files.write_json(finished, rows)
    return source


def _converged_period_one(config, task, weights, workdir, model_scope):
    """Trains the shared period 1 until it converges (`experiments/converged_period_one.py`),
    or reads how long it took; returns its number of epochs.

    The period is trained under `plan.period_epochs = max_epochs` and stopped at the first
    plateau. A rerun reads the plateau from the logs: a run killed after it resumes as
    though its plan had been that long from the start (the rates are the same up to it).
    """
    rule = converged_period_one.ConvergenceRule.from_config(config.converged_period_one)
    source = os.path.join(workdir, _folder(shared_period_one.SOURCE_METHOD))
    finished = os.path.join(source, "finished.json")
    log = os.path.join(source, "epochs.jsonl")
    epochs = rule.period_one_epochs(report.epoch_logs(log))
    if workdir_lib.read_json(finished) is None:
        compat.print_msg(f"Period 1, until it converges, shared by every method: {source}")
        if epochs is None:  # Not stopped yet: train (on) until the plateau, at most the cap.
            done = RunCheckpoint(os.path.join(source, "checkpoints")).newest()
            earlier = report.epoch_logs(log)[: done["epoch"] if done else 0]
            plan_epochs = rule.max_epochs
            stop = [converged_period_one.StopAtConvergence(rule, earlier)]
        else:  # Stopped before a kill: its plan is that long.
            plan_epochs, stop = epochs, []
        with _dtype_policy(config.train.mixed_precision):
            rows = train_and_evaluate(
                _with_period_epochs(config, plan_epochs),
                shared_period_one.SOURCE_METHOD,
                task,
                weights,
                source,
                model_scope,
                extra_callbacks=stop,
            )
        _atomic_files.write_json(finished, rows)
        epochs = rule.period_one_epochs(report.epoch_logs(log))
    logs = report.epoch_logs(log)[:epochs]
    outcome = "converged" if rule.converged(logs) else "reached its cap without converging"
    compat.print_msg(
        f"Period 1 {outcome} at epoch {epochs}: training loss {logs[-1]['loss']:.4f}, "
        f"accuracy {logs[-1]['accuracy']:.4f}. Every method's periods are {epochs} epochs."
    )
    return epochs


def _with_period_epochs(config, epochs):
    """A copy of `config` whose periods are `epochs` long."""
    config = copy.deepcopy(config)
    with config.unlocked():
        config.plan.period_epochs = epochs
    return config


def _build_compiled_model(config, method, task, weights, model_scope):
    """The model of `method`, compiled, built with the seed so that every method's head
    starts the same; and its `BlockPartition`."""
    keras.utils.set_random_seed(config.seed)  # Every method starts from the same head.
    config = methods.method_config(method, config)
    with model_scope():
        model = recipes.build_model(config, task.num_classes, weights)
        model.compile(
            optimizer=recipes.optimizer(config),
            **recipes.compile_arguments(config, task.num_classes),
        )
    return model, BlockPartition.for_model(model)


def mix_and_evaluate(config, method, task, weights, workdir, model_scope=contextlib.nullcontext):
    """A weight-mix method (WiSE-FT, `methods.WEIGHT_MIXES`): the shared period 1's last
    checkpoint, branched into `workdir`, mixed with the pre-trained snapshot, evaluated.

    Trains nothing; logs one epoch record (period 1's last epoch, with its training loss as
    it was before mixing) and returns its row.
    """
    model, partition = _build_compiled_model(config, method, task, weights, model_scope)
    periods = methods.plan_for(method, config.plan).resolve(
        partition.block_names, partition.head_name
    )
    checkpoint = RunCheckpoint(os.path.join(workdir, "checkpoints"))
    checkpoint.restore(model)
    epochs = checkpoint.newest()["epoch"]
    methods.weight_mix(method, config, partition, os.path.join(workdir, "pretrained.npz")).apply(
        model
    )
    evaluator = task.evaluator()
    feature_model = task.feature_model(model)
    scores = evaluator.evaluate(model if feature_model is None else feature_model)
    log_path = os.path.join(workdir, "epochs.jsonl")
    logs = {record["epoch"]: record for record in report.epoch_logs(log_path)}
    period_one = logs[epochs - 1]
    record = {
        "epoch": epochs - 1,
        "period": 1,
        "period_start_epoch": 0,
        "loss": period_one.get("loss"),
        **{key: float(value) for key, value in scores.items()},
    }
    # The branched log holds period 1's epochs; the mix replaces its last evaluation.
    _atomic_files.write_text(log_path, json.dumps(record) + "\n")
    task.write_pictures(evaluator, workdir, title=method)
    workdir_lib.save_model(model, os.path.join(workdir, "model.keras"))
    return report.read_history(log_path, method, periods, device_name())


def train_and_evaluate(
    config,
    method,
    task,
    weights,
    workdir,
    model_scope=contextlib.nullcontext,
    *,
    extra_callbacks=(),
):
    """One method: fit with its plan, evaluate at period ends, return per-epoch rows.

    `extra_callbacks` go after `RollbackRefine` and before the evaluation (the converged
    period 1's stop, which marks its epoch as a period end).
    """
    os.makedirs(workdir, exist_ok=True)
    model, partition = _build_compiled_model(config, method, task, weights, model_scope)
    plan = methods.plan_for(method, config.plan)
    periods = plan.resolve(partition.block_names, partition.head_name)
    evaluator = task.evaluator()
    # Shares the model's weights (the callback syncs them on JAX before evaluating).
    feature_model = task.feature_model(model)
    checkpoint = RunCheckpoint(os.path.join(workdir, "checkpoints"), verbose=1)
    newest = checkpoint.newest()
    done_epochs = newest["epoch"] if newest else 0
    snapshot = os.path.join(workdir, "pretrained.npz")
    if newest:
        _check_snapshot_of_these_weights(snapshot, model, partition, config)
    # Epochs after the checkpoint are trained (and logged) again; so is a cut last line.
    workdir_lib.truncate_json_lines(
        os.path.join(workdir, "epochs.jsonl"), lambda record: record["epoch"] < done_epochs
    )
    logging.info("Method %s: %s", method, plan)
    if done_epochs >= periods[-1].end_epoch:
        # Killed after the last checkpoint: every epoch and its evaluation are recorded.
        checkpoint.restore(model)
        compat.print_msg(
            f"{method}: all {done_epochs} epochs were trained in an earlier run "
            f"({newest['weights']}); evaluating that state again for the pictures."
        )
        evaluator.evaluate(model if feature_model is None else feature_model)
    else:
        train_data, steps = task.make_train(start_epoch=done_epochs)
        try:
            model.fit(
                train_data,
                epochs=periods[-1].end_epoch,
                steps_per_epoch=steps,
                shuffle=False,  # The dataset shuffles itself, seeded.
                verbose=fit_verbosity(),  # One line per epoch when output goes to a file.
                callbacks=[
                    # Order matters: logs written by earlier callbacks reach the later ones,
                    # and an epoch is checkpointed only once its weights are checked finite
                    # and its evaluation is recorded.
                    RollbackRefine(partition, plan=plan, snapshot=snapshot),
                    *extra_callbacks,
                    *methods.callbacks_for(method, config, partition, snapshot),
                    BlockDiagnostics(
                        partition,
                        gradient_batch=next(iter(train_data)),
                        every_n_steps=config.diagnostics.every_n_steps or None,
                        snapshot=snapshot,
                    ),
                    NanGuard(checkpoint),
                    # Every epoch's logs into epochs.jsonl, the metrics where evaluated: at
                    # the period ends RollbackRefine logs (plateau plans decide theirs while
                    # training) and every `every_epochs` epochs.
                    ReIDEvaluationCallback(
                        evaluator,
                        feature_model=feature_model,
                        period_ends=True,
                        every_n_epochs=config.evaluation.every_epochs or None,
                        prefix="",
                        log_path=os.path.join(workdir, "epochs.jsonl"),
                        log_all_epochs=True,
                        verbose=1,
                    ),
                    keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
                    checkpoint,
                ],
            )
        except Exception as error:
            task.raise_if_images_are_bad(error)
            raise
    task.write_pictures(evaluator, workdir, title=method)
    # For keras-rollback-export-features.
    workdir_lib.save_model(model, os.path.join(workdir, "model.keras"))
    return report.read_history(
        os.path.join(workdir, "epochs.jsonl"), method, periods, device_name()
    )


class ReIDTask:
    """A ReID dataset: training batches of identities, query-vs-gallery evaluation."""

    def __init__(self, config, dataset):
        self.config = config
        self.dataset = dataset
        self.num_classes = dataset.num_train_pids
        self.transform = recipes.image_transform(config)

    def make_train(self, start_epoch):
        """`(dataset, steps_per_epoch)`: epochs keyed on (seed, epoch), so every method and
        every resumed run sees the same batches at the same epoch."""
        return recipes.train_batches(self.config, self.dataset.train, self.transform, start_epoch)

    def evaluator(self):
        """The library's `ReIDEvaluator` of the query and gallery splits, with the paper's
        protocol (rank-1/5/10, mAP, mINP; CMC to rank 50 for the picture)."""
        config, dataset = self.config, self.dataset
        query, gallery = (
            reid_data.make_eval_dataset(records, transform=self.transform)
            for records in (dataset.query, dataset.gallery)
        )
        return evaluation.ReIDEvaluator(
            query,
            gallery,
            max_rank=50,
            ap_method=config.evaluation.ap_method,
            flip=config.evaluation.flip,
            rerank=config.evaluation.rerank,
            query_gallery_indices=dataset.query_gallery_indices(),
        )

    def feature_model(self, model):
        """The evaluated features: pooled, or after the BNNeck; shares `model`'s weights."""
        return recipes.feature_model(self.config, model)

    def write_pictures(self, evaluator, workdir, title):
        """`cmc.png` and `ranked_list.png` (first queries and their top 10) of the
        evaluator's last evaluation."""
        plot_cmc_curve(
            evaluator.last_scores.cmc, os.path.join(workdir, "cmc.png"), title=f"CMC ({title})"
        )
        query, gallery = evaluator.last_features
        rank_by = k_reciprocal_rerank if self.config.evaluation.rerank else pairwise_distance
        plot_ranked_list(
            rank_by(query["features"], gallery["features"]),
            query["path"],
            gallery["path"],
            query["pid"],
            gallery["pid"],
            query["camid"],
            gallery["camid"],
            os.path.join(workdir, "ranked_list.png"),
            query_indices=range(min(self.config.evaluation.ranked_list_queries, len(query["pid"]))),
            query_gallery_indices=evaluator.query_gallery_indices,
        )

    def raise_if_images_are_bad(self, error):
        """After `error` stopped training, raises `BadImageError` naming the files if some
        image cannot be decoded.

        Reading the dataset checks each file's header and end marker only (two small
        reads a file); a file corrupt inside decodes with an error that names no file. Only
        then is every image decoded to find it: healthy runs pay nothing for it.
        """
        if type(error).__name__ != "InvalidArgumentError":
            return
        records = [*self.dataset.train, *self.dataset.query, *self.dataset.gallery]
        reid_data.drop_bad_images(records, check="decode", on_bad_image="raise")


class ClassificationTask:
    """A fine-grained classification dataset: top-1 accuracy on its test split."""

    def __init__(self, load):
        self.load = load
        self.dataset = load()
        self.num_classes = self.dataset.num_classes

    def make_train(self, start_epoch):
        """`(dataset, None)`: a new seeded TFDS pipeline (not keyed on the epoch)."""
        del start_epoch  # TFDS pipelines reshuffle per iteration; resumes see a new order.
        return self.load().train, None

    def evaluator(self):
        return ClassificationEvaluator(self.dataset.test)

    def feature_model(self, model):
        """`None`: the classifier itself is evaluated."""
        del model

    def write_pictures(self, evaluator, workdir, title):
        """Classification runs draw only the shared loss / accuracy curves."""

    def raise_if_images_are_bad(self, error):
        """TensorFlow Datasets decodes its own records: its error stands as it is."""


class ClassificationEvaluator:
    """Top-1 accuracy of the classifier on the test split: the `Evaluator` interface of
    `ReIDEvaluationCallback` (`evaluate(model) -> dict of floats`)."""

    def __init__(self, test):
        self.test = test

    def evaluate(self, model):
        return {"top1": model.evaluate(self.test, verbose=0, return_dict=True)["accuracy"]}


@contextlib.contextmanager
def _dtype_policy(name):
    """Builds and trains under the `keras.mixed_precision` policy `name`, then restores."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _folder(method):
    return method.replace(":", "_")


def _read_task(config, workdir):
    name, root = config.dataset.name, config.dataset.root
    if config.task == "classification":
        common = {
            "transform": recipes.image_transform(config),
            "batch_size": config.batch_size,
            "seed": config.seed,
        }
        if name == "fgvc_aircraft":
            return ClassificationTask(
                functools.partial(reid_data.load_fgvc_aircraft, root, **common)
            )
        return ClassificationTask(
            functools.partial(
                reid_data.load_tfds_fine_grained, name, data_dir=root or None, **common
            )
        )
    if name != "synthetic":
        if name == "folder":
            return ReIDTask(config, _read_folder(config.dataset))
        return ReIDTask(config, reid_data.read_reid_dataset(name, root))
    root = workdir_lib.synthetic_dataset(
        os.path.join(workdir, "synthetic-market1501"), seed=config.seed, **config.synthetic
    )
    return ReIDTask(config, reid_data.read_market1501(root))


def _read_folder(dataset_config):
    return reid_data.read_folder_dataset(
        dataset_config.root,
        pattern=dataset_config.pattern,
        split_dirs=dict(dataset_config.split_dirs),
        skip_unparseable=dataset_config.skip_unparseable,
    )


def _check_snapshot_of_these_weights(path, model, partition, config):
    """Refuses to resume when the run's snapshot is not of the weights the model starts from.

    The model was just built from `config.model.weights`; the snapshot holds the weights
    the run started from. A snapshot of other weights (a replaced weights file, a rebuilt
    cache) would roll blocks back to a state this run never had.
    """
    if not os.path.exists(path):
        raise ValueError(
            f"Cannot resume {os.path.dirname(path)!r}: its checkpoints exist but its pre-trained "
            f"snapshot {path!r} is missing, so rollbacks have nothing to restore. Pass "
            "--start_over to start the work dir over."
        )
    differing = PretrainedSnapshot.load(path, partition).differences(
        PretrainedSnapshot.capture(model, partition)
    )
    if differing:
        raise ValueError(
            f"Pre-trained snapshot {path!r} of this run differs from the weights "
            f"config.model.weights={config.model.weights!r} gives now in {len(differing)} "
            f"arrays (e.g. {differing[:3]}): the run started from other pre-trained weights. "
            "Restore those weights, or pass --start_over to start the work dir over."
        )


def _record_weights(config, weights, workdir):
    """Fetches named weights (a clear error when missing) and writes `weights.json`."""
    provenance = weights_provenance(config.model.backbone, weights)
    if config.model.weights == "synthetic_source":
        provenance["weights"] = "synthetic_source"
        provenance["description"] = "pre-trained here on a disjoint synthetic task"
    _atomic_files.write_json(os.path.join(workdir, "weights.json"), provenance, indent=1)
    logging.info("Backbone weights: %s", provenance)
    return provenance


def _backbone_weights(config, workdir):
    weights = config.model.weights
    if weights == "synthetic_source":
        return pretrain.synthetic_source_weights(config, os.path.join(workdir, "pretrained-source"))
    return weights or None
