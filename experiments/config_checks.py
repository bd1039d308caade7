"""Checks of an experiment's configuration, all made before anything trains or is written.

A misspelt field on the command line names the field and the closest valid one; a misspelt
method, an unknown dataset or block, or a plan whose step decay never fires inside a period is
reported before the first method trains, not after it.
"""

import difflib
import importlib.util
import sys

import ml_collections
from absl import app
from absl import flags

from experiments import methods
from experiments.converged_period_one import ConvergenceRule
from experiments.recipes import OPTIMIZERS as OPTIMIZER_NAMES
from keras_rollback import BlockPartition
from keras_rollback.data.fine_grained import TFDS_DATASETS
from keras_rollback.data.readers import READERS
from keras_rollback.metrics.ranking import AP_METHODS
from keras_rollback.models import build_reid_model
from keras_rollback.user_error import UserError

CONFIG_FLAG = "config"
REID_DATASETS = (*READERS, "folder", "synthetic")
CLASSIFICATION_DATASETS = (*TFDS_DATASETS, "fgvc_aircraft")


class ConfigError(UserError, ValueError):
    """The experiment's configuration is invalid; the message names the field."""


def parse_flags_checking_config_fields(argv):
    """`absl.app.run`'s flags parser: first checks every `--config.<field>` override
    against the config file's fields, so that a misspelt one is named with the closest valid
    field instead of ml_collections' raw `AttributeError`."""
    exit_on_unknown_override_fields(argv, flags.FLAGS[CONFIG_FLAG].default_as_str or "")
    return app.parse_flags_with_usage(argv)


def exit_on_unknown_override_fields(argv, default_config):
    """Exits with status 1 and one line naming the field, if `check_override_fields` fails.

    Call it also before `config_flags.DEFINE_config_file(..., default_config)`: ml_collections
    applies the `--config.<field>` overrides of `sys.argv` to the default config while the
    flag is defined, and a misspelt field fails there with a traceback.
    """
    try:
        check_override_fields(argv, default_config)
    except ConfigError as e:
        sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
        sys.exit(1)


def check_override_fields(argv, default_config):
    """Raises `ConfigError` for a `--config.<field>` argument that names no field.

    Args:
        argv: The command line.
        default_config: The config flag's default (`path[:argument]`), used when `argv`
            gives no `--config=`.
    """
    config_arg = default_config.strip("'\"")
    overrides = []
    for arg in argv[1:]:
        if arg.startswith(f"--{CONFIG_FLAG}="):
            config_arg = arg.split("=", 1)[1]
        elif arg.startswith(f"--{CONFIG_FLAG}."):
            overrides.append(arg[len(f"--{CONFIG_FLAG}.") :].split("=", 1)[0])
    if not overrides:
        return
    path, _, argument = config_arg.partition(":")
    spec = importlib.util.spec_from_file_location("_checked_config", path)
    if spec is None or spec.loader is None:
        return  # The flag's own parser reports an unreadable config file.
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(argument) if argument else module.get_config()
    fields = sorted(_field_paths(config))
    for override in overrides:
        if override not in fields and not any(f.startswith(f"{override}.") for f in fields):
            close = difflib.get_close_matches(override, fields, n=1, cutoff=0.5)
            hint = f" Did you mean --config.{close[0]}?" if close else ""
            raise ConfigError(
                f"--config.{override} names no field of {path}.{hint} "
                f"Valid fields: {', '.join(fields)}."
            )


def validate_config(config):
    """Raises `ConfigError` naming the field if `config` cannot run to the end.

    Checks the task and dataset names, every method of `config.methods` (and, for
    `keep_block:<block>`, the block against the backbone's partition), the evaluation
    options, and the plan: `decay_epochs` must not exceed `period_epochs` (a decay that
    never fires is a mistake; equal means no decay).
    """
    if config.task not in ("reid", "classification"):
        raise ConfigError(
            f"Unknown config.task={config.task!r}. Expected 'reid' or 'classification'."
        )
    known = REID_DATASETS if config.task == "reid" else CLASSIFICATION_DATASETS
    if config.dataset.name not in known:
        raise ConfigError(
            f"Unknown config.dataset.name={config.dataset.name!r} for task "
            f"{config.task!r}.{_did_you_mean(config.dataset.name, known)} Expected one of {known}."
        )
    if config.task == "reid" and config.dataset.name != "synthetic" and not config.dataset.root:
        raise ConfigError(
            f"dataset.name={config.dataset.name!r} needs --config.dataset.root=<the dataset's "
            "folder>."
        )
    if config.evaluation.ap_method not in AP_METHODS:
        raise ConfigError(
            f"Unknown config.evaluation.ap_method={config.evaluation.ap_method!r}. "
            f"Expected one of {AP_METHODS}."
        )
    if config.get("optimizer_name", "sgd") not in OPTIMIZER_NAMES:
        raise ConfigError(
            f"Unknown config.optimizer_name={config.optimizer_name!r}."
            f"{_did_you_mean(config.optimizer_name, OPTIMIZER_NAMES)} Expected one of "
            f"{OPTIMIZER_NAMES}."
        )
    plan = config.plan
    converged = config.converged_period_one
    if not isinstance(converged.enabled, bool):
        raise ConfigError(
            "config.converged_period_one.enabled must be True or False. Received: "
            f"enabled={converged.enabled!r}"
        )
    if converged.enabled:
        try:
            rule = ConvergenceRule.from_config(converged)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not config.share_period_one:
            raise ConfigError(
                "config.converged_period_one.enabled trains the shared period 1 until it "
                "converges: set config.share_period_one=True."
            )
        if plan.decay_epochs > rule.min_epochs:
            raise ConfigError(
                f"config.plan.decay_epochs={plan.decay_epochs} is longer than "
                f"config.converged_period_one.min_epochs={rule.min_epochs}: period 1 could be "
                "called converged before its rates decay. Set decay_epochs <= min_epochs."
            )
    elif plan.decay_epochs > plan.period_epochs:
        raise ConfigError(
            f"config.plan.decay_epochs={plan.decay_epochs} is longer than "
            f"config.plan.period_epochs={plan.period_epochs}: the learning rate would never "
            "decay inside a period. Set decay_epochs <= period_epochs (equal: no decay)."
        )
    if not config.methods:
        raise ConfigError("config.methods is empty: name at least one method.")
    names = [m.split(":", 1)[0] + (":<block>" if ":" in m else "") for m in methods.METHODS]
    for method in config.methods:
        try:
            methods.plan_for(method, plan)
        except ValueError as e:
            hint = _did_you_mean(method, names)
            raise ConfigError(f"config.methods: {e}{hint}") from None
    if not isinstance(config.share_period_one, bool):
        raise ConfigError(
            "config.share_period_one must be True or False. Received: "
            f"share_period_one={config.share_period_one!r}"
        )
    continuing = [m for m in config.methods if m in methods.CONTINUE_FROM_PERIOD_ONE]
    if continuing and not config.share_period_one:
        raise ConfigError(
            f"config.methods: {continuing} continue from the shared period 1: set "
            "config.share_period_one=True."
        )
    kept = [m.split(":", 1)[1] for m in config.methods if m.startswith("keep_block:")]
    if kept:
        model = build_reid_model(
            2, config.model.backbone, weights=None, input_shape=(*config.image_size, 3)
        )
        blocks = BlockPartition.for_model(model).block_names
        for block in kept:
            if block not in blocks:
                raise ConfigError(
                    f"config.methods: keep_block:{block} names no block of "
                    f"{config.model.backbone}.{_did_you_mean(block, blocks)} Blocks: {blocks}."
                )


def _did_you_mean(value, choices):
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _field_paths(config, prefix=""):
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from _field_paths(value, prefix=f"{path}.")
        else:
            yield path
