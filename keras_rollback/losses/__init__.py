"""Training losses for ReID: batch-hard triplet, and identity cross-entropy plus triplet."""

from keras_rollback.losses.batch_hard_triplet_loss import BatchHardTripletLoss
from keras_rollback.losses.batch_hard_triplet_loss import batch_hard_triplet_loss
from keras_rollback.losses.reid_loss import ReIDLoss
