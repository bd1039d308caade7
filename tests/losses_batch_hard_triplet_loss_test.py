"""Tests for keras_rollback.losses: batch-hard triplet and ReIDLoss against plain loops."""

import keras
import numpy as np
import pytest

from keras_rollback.losses import BatchHardTripletLoss
from keras_rollback.losses import ReIDLoss


def triplet_loop(labels, features, margin):
    """The definition, anchor by anchor (Hermans et al., 2017)."""
    losses = []
    for a in range(len(labels)):
        distance = [np.linalg.norm(features[a] - features[b]) for b in range(len(labels))]
        positive = max(distance[b] for b in range(len(labels)) if labels[b] == labels[a])
        negative = min(distance[b] for b in range(len(labels)) if labels[b] != labels[a])
        losses.append(max(0.0, positive - negative + margin))
    return np.mean(losses)


def test_batch_hard_triplet_equals_the_definition():
    rng = np.random.default_rng(0)
    labels = np.repeat([3, 7, 9, 11], 3)
    features = rng.normal(size=(12, 5)).astype(np.float32)
    loss = BatchHardTripletLoss(margin=0.3)(labels, features)
    np.testing.assert_allclose(float(loss), triplet_loop(labels, features, 0.3), rtol=1e-5)


def test_separated_identities_have_zero_triplet_loss():
    labels = np.array([0, 0, 1, 1])
    features = np.array([[0, 0], [0, 0.1], [10, 0], [10, 0.1]], np.float32)
    assert float(BatchHardTripletLoss(margin=0.3)(labels, features)) == 0.0


def test_reid_loss_is_label_smoothed_cross_entropy_plus_weighted_triplet():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 2, 2, 1, 1])
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    features = rng.normal(size=(6, 4)).astype(np.float32)
    epsilon = 0.1
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    targets = (1 - epsilon) * np.eye(3)[labels] + epsilon / 3
    cross_entropy = -(targets * log_softmax).sum(1).mean()
    loss = ReIDLoss(3, label_smoothing=epsilon, triplet_weight=0.5)(
        labels, np.concatenate([logits, features], axis=1)
    )
    expected = cross_entropy + 0.5 * triplet_loop(labels, features, 0.3)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    only_logits = ReIDLoss(3, label_smoothing=epsilon)(labels, logits)
    np.testing.assert_allclose(float(only_logits), cross_entropy, rtol=1e-5)


def test_bad_arguments_and_missing_features_are_clear_errors():
    with pytest.raises(ValueError, match="margin=0"):
        BatchHardTripletLoss(margin=0)
    with pytest.raises(ValueError, match="label_smoothing=1"):
        ReIDLoss(3, label_smoothing=1)
    with pytest.raises(ValueError, match="build_bnneck_model"):
        ReIDLoss(3, triplet_weight=1.0)(np.array([0, 1]), np.zeros((2, 3), np.float32))


def test_losses_serialize():
    loss = ReIDLoss(5, label_smoothing=0.1, triplet_weight=1.0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.get_config() == loss.get_config()
