"""ReID evaluation: feature extraction, an evaluator, an in-training callback, pictures, a command."""

from keras_rollback.evaluation.feature_extraction import extract_features
from keras_rollback.evaluation.model_evaluation import ModelInputError
from keras_rollback.evaluation.model_evaluation import evaluate_model_file
from keras_rollback.evaluation.model_evaluation import evaluate_model_on_dataset
from keras_rollback.evaluation.model_evaluation import evaluation_feature_model
from keras_rollback.evaluation.model_evaluation import results_summary
from keras_rollback.evaluation.reid_evaluation_callback import ReIDEvaluationCallback
from keras_rollback.evaluation.reid_evaluator import ReIDEvaluator
from keras_rollback.evaluation.visualization import plot_cmc_curve
from keras_rollback.evaluation.visualization import plot_ranked_list
