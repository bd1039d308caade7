"""ReIDEvaluationCallback: a `ReIDEvaluator` run at chosen epochs of `fit`, into `logs`."""

import keras
from absl import logging

from keras_rollback.evaluation.reid_evaluator import ReIDEvaluator


def _positive_int(value):
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


class ReIDEvaluationCallback(keras.callbacks.Callback):
    """Evaluate re-identification on a query and a gallery set at chosen epochs.

    A thin callback over `ReIDEvaluator` (available as `self.evaluator`): at the end of
    an evaluated epoch it extracts the features with the trained weights, scores them
    under the Market-1501 protocol, and writes rank-k, mAP and mINP into the epoch's
    `logs`, so `History`, `CSVLogger` and `TensorBoard` record them (the paper's Figure 4
    plots mAP over epochs). Put it *before* those callbacks in the `callbacks` list: they
    read `logs` after it has written there. On epochs without an evaluation nothing is
    added, so a `CSVLogger` that first sees an epoch without them does not create their
    columns; evaluate the first epoch too (e.g. `epochs=[1, ...]`) to have them.

    Example:

    ```python
    features = keras.Model(model.input, model.get_layer("pool").output)
    # At the end of every 40-epoch period, and every 10 epochs.
    callback = ReIDEvaluationCallback(query_ds, gallery_ds, feature_model=features,
                                      epochs=[40, 80, 120, 160], every_n_epochs=10)
    model.fit(train_ds, epochs=160, callbacks=[callback, keras.callbacks.CSVLogger("log.csv")])
    ```

    Args:
        query_data: Iterable of dict batches (`image`, `pid`, `camid`, `path`), e.g. a
            `tf.data.Dataset`; iterated once per evaluation.
        gallery_data: Same, for the gallery.
        feature_model: Keras model sharing weights with the trained model and returning the
            embedding. `None` uses the trained model's own output. Defaults to `None`.
        every_n_epochs: Int or None. Evaluate after epochs `n, 2n, ...` (1-based). `None`
            means 1 when `epochs` is None, else no periodic evaluation. Defaults to `None`.
        epochs: Iterable of ints or None. Further 1-based epochs to evaluate after (e.g.
            the ends of the rollback periods). Defaults to `None`.
        ranks, max_rank, metric, ap_method, flip, rerank: As in `ReIDEvaluator`. Re-ranking
            costs a few gallery-sized passes more per evaluation, so it is usually kept for
            the final one.
        prefix: String put before each log key. Defaults to `"val_"`.
        verbose: Int. 1 logs the scores (absl.logging) after each evaluation. Defaults to `0`.
    """

    def __init__(
        self,
        query_data,
        gallery_data,
        feature_model=None,
        every_n_epochs=None,
        epochs=None,
        ranks=(1, 5, 10),
        max_rank=None,
        metric="euclidean",
        ap_method="trapezoidal",
        flip=True,
        rerank=False,
        prefix="val_",
        verbose=0,
    ):
        super().__init__()
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
        if every_n_epochs is None and epochs is None:
            every_n_epochs = 1
        if verbose not in (0, 1):
            raise ValueError(f"Received: verbose={verbose!r}. Expected 0 or 1.")
        if feature_model is not None and not callable(feature_model):
            raise ValueError(
                f"Received: feature_model={feature_model!r}. Expected a Keras model or None."
            )
        self.evaluator = ReIDEvaluator(
            query_data,
            gallery_data,
            ranks=ranks,
            max_rank=max_rank,
            metric=metric,
            ap_method=ap_method,
            flip=flip,
            rerank=rerank,
        )
        self.feature_model = feature_model
        self.every_n_epochs = every_n_epochs
        self.epochs = frozenset(epochs or ())
        self.prefix = prefix
        self.verbose = verbose
        self.history = {}

    @property
    def ranks(self):
        return self.evaluator.ranks

    @property
    def last_features(self):
        """The (query, gallery) features of the last evaluation, from `extract_features`."""
        return self.evaluator.last_features

    def on_train_begin(self, logs=None):
        self.history = {}

    def evaluates_after(self, epoch):
        """Whether the 0-based `epoch` is evaluated."""
        periodic = self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0
        return periodic or (epoch + 1) in self.epochs

    def evaluate(self):
        """Runs one evaluation now; returns the `RankingScores` (features in `last_features`)."""
        # Reading `self.model` first syncs the weights on JAX (they live outside the
        # variables during an epoch); a feature model sharing them then sees them too.
        trained_model = self.model
        return self.evaluator(
            self.feature_model if self.feature_model is not None else trained_model
        )

    def on_epoch_end(self, epoch, logs=None):
        if not self.evaluates_after(epoch):
            return
        scores = self.evaluate().as_logs(ranks=self.ranks, prefix=self.prefix)
        self.history[epoch] = scores
        if logs is not None:
            logs.update(scores)
        if self.verbose:
            logging.info(
                "Epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
            )
