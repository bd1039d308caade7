"""Callbacks for `model.fit`: the method, its diagnostics, evaluation and reliability."""

from keras_rollback.callbacks.block_diagnostics import BlockDiagnostics
from keras_rollback.callbacks.l2_sp import L2SP
from keras_rollback.callbacks.nan_guard import NanGuard
from keras_rollback.callbacks.reid_evaluation_callback import ReIDEvaluationCallback
from keras_rollback.callbacks.rollback_refine import RollbackRefine
from keras_rollback.callbacks.run_checkpoint import RunCheckpoint
from keras_rollback.callbacks.wise_ft import WiSEFT

__all__ = [
    "L2SP",
    "BlockDiagnostics",
    "NanGuard",
    "ReIDEvaluationCallback",
    "RollbackRefine",
    "RunCheckpoint",
    "WiSEFT",
]
