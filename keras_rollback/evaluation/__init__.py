"""ReID evaluation: feature extraction, an evaluator, an in-training callback, pictures."""

from keras_rollback.evaluation.feature_extraction import extract_features
from keras_rollback.evaluation.reid_evaluation_callback import ReIDEvaluationCallback
from keras_rollback.evaluation.reid_evaluator import ReIDEvaluator
from keras_rollback.evaluation.visualization import plot_cmc_curve
from keras_rollback.evaluation.visualization import plot_ranked_list
