"""keras-rollback: rolling-back refine-tuning (Ro et al., AAAI 2019) for Keras 3."""

from keras_rollback import _moved_modules
from keras_rollback.block_partition import BlockPartition
from keras_rollback.callbacks import L2SP
from keras_rollback.callbacks import BlockDiagnostics
from keras_rollback.callbacks import NanGuard
from keras_rollback.callbacks import ReIDEvaluationCallback
from keras_rollback.callbacks import RollbackRefine
from keras_rollback.callbacks import RunCheckpoint
from keras_rollback.callbacks import WiSEFT
from keras_rollback.distribute import MultiProcessJob
from keras_rollback.distribute import batch_size_scale
from keras_rollback.distribute import scale_plan_for_batch_size
from keras_rollback.optimizers import LayerwiseAdamW
from keras_rollback.optimizers import LayerwiseSGD
from keras_rollback.plateau_rule import PlateauRule
from keras_rollback.pretrained_snapshot import PretrainedSnapshot
from keras_rollback.refine_plan import Period
from keras_rollback.refine_plan import RefinePlan
from keras_rollback.refine_tune import refine_tune
from keras_rollback.user_error import UserError
from keras_rollback.version import __version__

_moved_modules.install()

__all__ = [
    "L2SP",
    "BlockDiagnostics",
    "BlockPartition",
    "LayerwiseAdamW",
    "LayerwiseSGD",
    "MultiProcessJob",
    "NanGuard",
    "Period",
    "PlateauRule",
    "PretrainedSnapshot",
    "ReIDEvaluationCallback",
    "RefinePlan",
    "RollbackRefine",
    "RunCheckpoint",
    "UserError",
    "WiSEFT",
    "__version__",
    "batch_size_scale",
    "refine_tune",
    "scale_plan_for_batch_size",
]
