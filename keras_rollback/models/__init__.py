"""Backbones (a registry of families with weight provenance), the paper's ReID model, weights."""

from keras_rollback.models.backbone_registry import backbone_specs
from keras_rollback.models.backbone_registry import get_backbone_spec
from keras_rollback.models.backbone_spec import BackboneSpec
from keras_rollback.models.backbone_spec import register_backbone
from keras_rollback.models.backbones import ARCHITECTURES
from keras_rollback.models.backbones import backbone_preprocessing
from keras_rollback.models.backbones import build_backbone
from keras_rollback.models.backbones import resolve_source
from keras_rollback.models.backbones import weights_provenance
from keras_rollback.models.bnneck_model import build_bnneck_feature_model
from keras_rollback.models.bnneck_model import build_bnneck_model
from keras_rollback.models.convert_torchvision import convert_torchvision_checkpoint
from keras_rollback.models.keras_weights import load_weights_strict
from keras_rollback.models.model_file import ModelFileError
from keras_rollback.models.model_file import load_model_file
from keras_rollback.models.reid_model import build_feature_model
from keras_rollback.models.reid_model import build_reid_model
from keras_rollback.models.torchvision_resnet import keras_hub_resnet
from keras_rollback.models.torchvision_weights import load_torchvision_weights
from keras_rollback.models.torchvision_weights import read_state_dict
from keras_rollback.models.torchvision_weights import torchvision_name_map
from keras_rollback.models.weight_file_errors import WeightFileError
from keras_rollback.models.weight_file_errors import WeightFileNotFoundError
from keras_rollback.models.weight_source import MissingWeightsError
from keras_rollback.models.weight_source import WeightSource
from keras_rollback.models.weight_source import weights_home

__all__ = [
    "ARCHITECTURES",
    "BackboneSpec",
    "MissingWeightsError",
    "ModelFileError",
    "WeightFileError",
    "WeightFileNotFoundError",
    "WeightSource",
    "backbone_preprocessing",
    "backbone_specs",
    "build_backbone",
    "build_bnneck_feature_model",
    "build_bnneck_model",
    "build_feature_model",
    "build_reid_model",
    "convert_torchvision_checkpoint",
    "get_backbone_spec",
    "keras_hub_resnet",
    "load_model_file",
    "load_torchvision_weights",
    "load_weights_strict",
    "read_state_dict",
    "register_backbone",
    "resolve_source",
    "torchvision_name_map",
    "weights_home",
    "weights_provenance",
]
