"""Old module paths of keras-rollback 0.x, still importable with a `DeprecationWarning`.

The package root was flat until the modules moved into `optimizers/`, `callbacks/` and
`distribute/` as Keras groups its own. `import keras_rollback.layerwise_sgd` (or `from ... import`)
keeps working: the old name is the new module itself, so classes, `isinstance` checks and
registered serialisation are unchanged. To be removed in 1.0.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED_MODULES = {
    "keras_rollback.layerwise_sgd": "keras_rollback.optimizers.layerwise_sgd",
    "keras_rollback.torch_layerwise_sgd": "keras_rollback.optimizers.torch_layerwise_sgd",
    "keras_rollback.rollback_refine": "keras_rollback.callbacks.rollback_refine",
    "keras_rollback.block_diagnostics": "keras_rollback.callbacks.block_diagnostics",
    "keras_rollback.nan_guard": "keras_rollback.callbacks.nan_guard",
    "keras_rollback.run_checkpoint": "keras_rollback.callbacks.run_checkpoint",
    "keras_rollback.evaluation.reid_evaluation_callback": (
        "keras_rollback.callbacks.reid_evaluation_callback"
    ),
    "keras_rollback.distribution": "keras_rollback.distribute.batch_size_scaling",
    "keras_rollback.multi_process_job": "keras_rollback.distribute.multi_process_job",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_name):
        self._new_name = new_name

    def create_module(self, spec):
        warnings.warn(
            f"`{spec.name}` moved to `{self._new_name}`; import it from there (the old path "
            "will be removed in keras-rollback 1.0).",
            DeprecationWarning,
            stacklevel=2,
        )
        # The new module itself, so that the old name and the new one are the same object.
        return importlib.import_module(self._new_name)

    def exec_module(self, module):
        """Nothing to run: `create_module` returned the already imported new module."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new_name = MOVED_MODULES.get(fullname)
        if new_name is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new_name))


def install():
    """Makes the old module paths importable (idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
