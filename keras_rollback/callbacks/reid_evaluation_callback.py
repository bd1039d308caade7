"""ReIDEvaluationCallback: an evaluator run at chosen epochs of `fit`, into `logs` and a log."""

import os
import time
import warnings
from collections.abc import Mapping
from typing import Protocol
from typing import runtime_checkable

import keras

from keras_rollback import _atomic_files
from keras_rollback import compat
from keras_rollback.evaluation.reid_evaluator import ReIDEvaluator

# The options of the evaluator that the callback re-listed before it took the evaluator
# (keras-rollback 0.x): the old call form still builds one from them, with a warning.
_OLD_POSITIONAL = (
    "feature_model",
    "every_n_epochs",
    "epochs",
    "ranks",
    "max_rank",
    "metric",
    "ap_method",
    "flip",
    "rerank",
    "prefix",
    "verbose",
)
_OLD_EVALUATOR_OPTIONS = ("ranks", "max_rank", "metric", "ap_method", "flip", "rerank")


@runtime_checkable
class Evaluator(Protocol):
    """What `ReIDEvaluationCallback` runs: `ReIDEvaluator`, or any object with this method.

    `evaluate(model)` scores `model` (the callback's `feature_model`, else the trained
    model) and returns the metrics as a dict of floats, e.g. `{"rank1": ..., "mAP": ...}`
    or `{"top1": ...}`. It is called between epochs, with the current weights.
    """

    def evaluate(self, model) -> Mapping[str, float]: ...


def _positive_int(value):
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def _json_value(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class ReIDEvaluationCallback(keras.callbacks.Callback):
    """Run an evaluator at chosen epochs of `fit`: into `logs`, and optionally a JSONL log.

    The evaluator carries the data and every option of the evaluation: a `ReIDEvaluator`
    (query and gallery sets, ranks, metric, AP method, flip, re-ranking, and
    `query_gallery_indices` for a dataset without cameras, e.g. a folder dataset whose
    query and gallery are one folder), or any object with the small `Evaluator` interface
    `evaluate(model) -> dict of floats` (e.g. a classification accuracy). At the end of
    an evaluated epoch the callback runs it with the trained weights and writes the
    metrics, with `prefix` before each name, into the epoch's `logs`, so `History`,
    `CSVLogger` and `TensorBoard` record them (the paper's Figure 4 plots mAP over
    epochs). Put it *after* `RollbackRefine` (whose period information it reads) and
    *before* the callbacks that read its metrics. On epochs without an evaluation nothing
    is added, so a `CSVLogger` that first sees such an epoch does not create their columns.

    Evaluated epochs (the union of):

    * `period_ends=True`: the last epoch of every period, read from the epoch logs that
      `RollbackRefine` writes (`period_end` is 1 there): fixed plans and plateau plans,
      whose periods end when the rule says so, alike;
    * `every_n_epochs=n`: epochs `n, 2n, ...` (1-based);
    * `epochs=[...]`: the listed 1-based epochs.

    With none of them given, every epoch is evaluated.

    With `log_path`, one JSON line is appended per evaluated epoch (every epoch with
    `log_all_epochs=True`): `{"epoch": <0-based, as Keras counts>, "wall_time": <seconds
    since training began>, **logs}`, the epoch's logs holding the metrics and what
    `fit` and the earlier callbacks wrote (`loss`; `period`, `period_start_epoch`,
    `period_end`, `lr_<group>` from `RollbackRefine`). Each line goes out in one write,
    flushed: a process killed mid-write leaves at most a cut last line.

    Example:

    ```python
    evaluator = ReIDEvaluator(query_ds, gallery_ds, ap_method="non_interpolated")
    features = keras.Model(model.input, model.get_layer("pool").output)
    callback = ReIDEvaluationCallback(
        evaluator, feature_model=features, period_ends=True, every_n_epochs=10,
        log_path="evaluations.jsonl",
    )
    model.fit(train_ds, epochs=160, callbacks=[
        RollbackRefine(partition, period_epochs=40), callback,
        keras.callbacks.CSVLogger("log.csv"),
    ])
    ```

    Args:
        evaluator: `ReIDEvaluator`, or any object with `evaluate(model) -> dict of floats`.
        feature_model: Keras model sharing weights with the trained model, passed to
            `evaluator.evaluate` (e.g. the embedding). `None` passes the trained model.
            Defaults to `None`.
        every_n_epochs: Int or None. Evaluate after epochs `n, 2n, ...` (1-based).
            Defaults to `None`.
        epochs: Iterable of ints or None. Further 1-based epochs to evaluate after.
            Defaults to `None`.
        period_ends: Bool. Evaluate at the end of every `RollbackRefine` period (read from
            the logs; raises at the first epoch if they hold no `period_end`). Defaults to
            `False`.
        prefix: String put before each metric name in `logs`. Defaults to `"val_"`.
        log_path: Path-like or None. JSON-lines file to append a line to per evaluation
            (kept across runs: a resumed run appends). Defaults to `None`.
        log_all_epochs: Bool. With `log_path`, append a line for every epoch, evaluated or
            not (its metrics only where evaluated). Defaults to `False`.
        verbose: Int. 1 prints the scores after each evaluation. Defaults to `0`.

    The old form `ReIDEvaluationCallback(query_data, gallery_data, ..., ranks=...,
    rerank=...)` builds a `ReIDEvaluator` from those arguments and warns (deprecated; it
    will be removed in keras-rollback 1.0).
    """

    def __init__(
        self,
        evaluator=None,
        *old_args,
        feature_model=None,
        every_n_epochs=None,
        epochs=None,
        period_ends=False,
        prefix="val_",
        log_path=None,
        log_all_epochs=False,
        verbose=0,
        **old_kwargs,
    ):
        super().__init__()
        if old_args or old_kwargs:
            evaluator, given = self._from_old_form(evaluator, old_args, old_kwargs)
            feature_model = given.get("feature_model", feature_model)
            every_n_epochs = given.get("every_n_epochs", every_n_epochs)
            epochs = given.get("epochs", epochs)
            prefix = given.get("prefix", prefix)
            verbose = given.get("verbose", verbose)
        if not isinstance(evaluator, Evaluator):
            raise ValueError(
                f"Received: evaluator={evaluator!r}. Expected a `ReIDEvaluator` or an object "
                "with a method `evaluate(model)` returning a dict of floats."
            )
        if every_n_epochs is not None and not _positive_int(every_n_epochs):
            raise ValueError(
                f"Received: every_n_epochs={every_n_epochs!r}. Expected a positive integer or None."
            )
        if epochs is not None:
            epochs = tuple(epochs)
            if not all(_positive_int(e) for e in epochs):
                raise ValueError(
                    f"Received: epochs={epochs!r}. Expected 1-based epoch numbers (positive "
                    "integers) or None."
                )
        if not isinstance(period_ends, bool):
            raise ValueError(f"Received: period_ends={period_ends!r}. Expected True or False.")
        if every_n_epochs is None and epochs is None and not period_ends:
            every_n_epochs = 1
        if not isinstance(prefix, str):
            raise ValueError(f"Received: prefix={prefix!r}. Expected a string.")
        if log_path is not None and not isinstance(log_path, (str, os.PathLike)):
            raise ValueError(f"Received: log_path={log_path!r}. Expected a path or None.")
        if not isinstance(log_all_epochs, bool):
            raise ValueError(
                f"Received: log_all_epochs={log_all_epochs!r}. Expected True or False."
            )
        if verbose not in (0, 1):
            raise ValueError(f"Received: verbose={verbose!r}. Expected 0 or 1.")
        if feature_model is not None and not callable(feature_model):
            raise ValueError(
                f"Received: feature_model={feature_model!r}. Expected a Keras model or None."
            )
        self.evaluator = evaluator
        self.feature_model = feature_model
        self.every_n_epochs = every_n_epochs
        self.epochs = frozenset(epochs or ())
        self.period_ends = period_ends
        self.prefix = prefix
        self.log_path = None if log_path is None else os.fspath(log_path)
        self.log_all_epochs = log_all_epochs
        self.verbose = verbose
        self.history = {}
        self._started = None

    @staticmethod
    def _from_old_form(query_data, old_args, old_kwargs):
        """`(evaluator, other old arguments)` of the deprecated query/gallery call form."""
        given = dict(old_kwargs)
        if "query_data" in given:
            if query_data is not None:
                raise TypeError("ReIDEvaluationCallback got query_data twice.")
            query_data = given.pop("query_data")
        if old_args:
            if "gallery_data" in given:
                raise TypeError("ReIDEvaluationCallback got gallery_data twice.")
            given["gallery_data"] = old_args[0]
            if len(old_args) > 1 + len(_OLD_POSITIONAL):
                raise TypeError(
                    f"ReIDEvaluationCallback takes at most {2 + len(_OLD_POSITIONAL)} "
                    f"positional arguments in its deprecated form ({1 + len(old_args)} given)."
                )
            for name, value in zip(_OLD_POSITIONAL, old_args[1:]):
                if name in given:
                    raise TypeError(f"ReIDEvaluationCallback got {name} twice.")
                given[name] = value
        unknown = set(given) - {"gallery_data", *_OLD_POSITIONAL}
        if unknown:
            raise TypeError(
                "ReIDEvaluationCallback got unexpected keyword arguments "
                f"{sorted(unknown)}. It takes (evaluator, *, feature_model=None, "
                "every_n_epochs=None, epochs=None, period_ends=False, prefix='val_', "
                "log_path=None, log_all_epochs=False, verbose=0)."
            )
        if "gallery_data" not in given:
            raise TypeError(
                "ReIDEvaluationCallback takes an evaluator that carries the data and the "
                f"evaluation options: pass {sorted(given)} to ReIDEvaluator(query_data, "
                "gallery_data, ...) and the evaluator to the callback."
            )
        warnings.warn(
            "ReIDEvaluationCallback(query_data, gallery_data, ..., ranks=..., rerank=...) is "
            "deprecated and will be removed in keras-rollback 1.0: pass a ReIDEvaluator, "
            "ReIDEvaluationCallback(ReIDEvaluator(query_data, gallery_data, ranks=...), ...).",
            DeprecationWarning,
            stacklevel=3,
        )
        options = {k: given.pop(k) for k in _OLD_EVALUATOR_OPTIONS if k in given}
        evaluator = ReIDEvaluator(query_data, given.pop("gallery_data"), **options)
        return evaluator, given

    @property
    def ranks(self):
        """The evaluator's CMC ranks (`None` if it has none)."""
        return getattr(self.evaluator, "ranks", None)

    @property
    def last_features(self):
        """The (query, gallery) features of the evaluator's last evaluation (a `ReIDEvaluator`)."""
        return getattr(self.evaluator, "last_features", None)

    def on_train_begin(self, logs=None):
        self.history = {}
        self._started = time.time()

    def evaluates_after(self, epoch, logs=None):
        """Whether the 0-based `epoch`, whose logs are `logs`, is evaluated."""
        if self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0:
            return True
        if (epoch + 1) in self.epochs:
            return True
        if self.period_ends:
            if logs is None or "period_end" not in logs:
                raise ValueError(
                    "ReIDEvaluationCallback(period_ends=True) reads the period ends from the "
                    "logs that RollbackRefine writes: put RollbackRefine before it in "
                    f"`callbacks`. Received: logs of epoch {epoch + 1} with keys "
                    f"{sorted(logs or ())}."
                )
            return bool(logs["period_end"])
        return False

    def evaluate(self):
        """Runs one evaluation now; returns the evaluator's metrics (without `prefix`)."""
        # Reading `self.model` first syncs the weights on JAX (they live outside the
        # variables during an epoch); a feature model sharing them then sees them too.
        trained_model = self.model
        model = self.feature_model if self.feature_model is not None else trained_model
        return {k: float(v) for k, v in self.evaluator.evaluate(model).items()}

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        if self._started is None:  # Called outside `fit`.
            self._started = time.time()
        wall_time = time.time() - self._started
        evaluated = self.evaluates_after(epoch, logs)
        if evaluated:
            scores = {self.prefix + k: v for k, v in self.evaluate().items()}
            self.history[epoch] = scores
            logs.update(scores)
            if self.verbose:
                compat.print_msg(self._summary(epoch, logs, scores))
        if self.log_path is not None and (evaluated or self.log_all_epochs):
            record = {k: _json_value(v) for k, v in logs.items()}
            _atomic_files.append_json_line(
                self.log_path, {"epoch": epoch, "wall_time": wall_time, **record}
            )

    @staticmethod
    def _summary(epoch, logs, scores):
        where = f"Epoch {epoch + 1}"
        if "period" in logs:
            end = "end of " if logs.get("period_end") else ""
            where += f", {end}period {float(logs['period']):g}"
        values = ({"loss": logs["loss"]} if "loss" in logs else {}) | scores
        return where + ": " + ", ".join(f"{k}={float(v):.4f}" for k, v in values.items())
