"""Person re-identification metrics in the style of `sklearn.metrics`."""

from keras_rollback.metrics.distance import pairwise_distance
from keras_rollback.metrics.ranking import ranking_scores
from keras_rollback.metrics.ranking import ranking_scores_from_features
from keras_rollback.metrics.ranking import single_gallery_shot_cmc
from keras_rollback.metrics.ranking_reference import reference_ranking_scores
from keras_rollback.metrics.ranking_scores import RankingScores
from keras_rollback.metrics.reranking import k_reciprocal_rerank
