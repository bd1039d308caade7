"""ReID evaluation: feature extraction, an evaluator, activation maps, pictures, a command."""

import warnings

from keras_rollback.evaluation.activation_maps import activation_maps
from keras_rollback.evaluation.activation_maps import foreground_share
from keras_rollback.evaluation.feature_extraction import extract_features
from keras_rollback.evaluation.model_evaluation import ModelInputError
from keras_rollback.evaluation.model_evaluation import evaluate_model_file
from keras_rollback.evaluation.model_evaluation import evaluate_model_on_dataset
from keras_rollback.evaluation.model_evaluation import evaluation_feature_model
from keras_rollback.evaluation.model_evaluation import results_summary
from keras_rollback.evaluation.reid_evaluator import ReIDEvaluator
from keras_rollback.evaluation.visualization import plot_activation_maps
from keras_rollback.evaluation.visualization import plot_cmc_curve
from keras_rollback.evaluation.visualization import plot_ranked_list


def __getattr__(name):
    # The evaluation callback moved to `keras_rollback.callbacks`; looked up lazily, because
    # that module imports this package.
    if name == "ReIDEvaluationCallback":
        warnings.warn(
            "`keras_rollback.evaluation.ReIDEvaluationCallback` moved to "
            "`keras_rollback.callbacks.ReIDEvaluationCallback` (also `keras_rollback."
            "ReIDEvaluationCallback`); the old name will be removed in keras-rollback 1.0.",
            DeprecationWarning,
            stacklevel=2,
        )
        from keras_rollback.callbacks import ReIDEvaluationCallback

        return ReIDEvaluationCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
