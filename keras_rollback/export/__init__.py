"""Deployable exports of trained models: the evaluation feature extractor (SavedModel, ONNX)."""

from keras_rollback.export.feature_extractor import ExportTargetError
from keras_rollback.export.feature_extractor import export_feature_extractor
from keras_rollback.export.feature_extractor import read_contract
