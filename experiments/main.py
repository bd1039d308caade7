"""Runs an experiment of the paper: every method of a config, evaluated per period.

    python -m experiments.main --workdir=/tmp/run                    # offline main job
    python -m experiments.main --config=experiments/configs/table2.py:market1501 \\
        --config.dataset.root=/data/Market-1501-v15.09.15 --workdir=/tmp/table2-market
    python -m experiments.main --config=experiments/configs/study.py --workdir=/tmp/study
    python -m experiments.main --config=experiments/configs/figure6.py \\
        --config.figure6.runs=/tmp/run --workdir=/tmp/figure6   # maps of trained models
    # One process of a job over N machines (each runs this with its own process_id):
    python -m experiments.main --workdir=/shared/run --config.distribution.num_processes=N \\
        --config.distribution.process_id=i --config.distribution.coordinator=node0:12345
    # On the torch backend, torchrun starts the processes (its environment names the job):
    KERAS_BACKEND=torch torchrun --nproc_per_node=2 -m experiments.main --workdir=/tmp/run
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import config_checks
from experiments import figure6
from experiments import launch
from experiments import study
from keras_rollback import command_line

FLAGS = flags.FLAGS
DEFAULT_CONFIG = "experiments/configs/synthetic.py"
flags.DEFINE_string("workdir", None, "Directory for the config, logs, checkpoints and results.")
if __name__ == "__main__":  # Overrides are applied while the flag is defined: check them first.
    config_checks.exit_on_unknown_override_fields(sys.argv, DEFAULT_CONFIG)
config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "Experiment configuration file.", lock_config=True
)
flags.DEFINE_bool(
    "start_over",
    False,
    "Delete the work dir's contents and start a new run (a work dir refuses a rerun with "
    "another config otherwise).",
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if "study" in FLAGS.config:  # Several seeds: experiments/configs/study.py.
        study.run_study(FLAGS.config, FLAGS.workdir)
    elif "figure6" in FLAGS.config:  # Activation maps of trained runs: configs/figure6.py.
        figure6.run_figure6(FLAGS.config, FLAGS.workdir)
    else:
        launch.run(FLAGS.config, FLAGS.workdir, start_over=FLAGS.start_over)


if __name__ == "__main__":
    # A user's mistake (missing weights or dataset, a work dir in use or started with another
    # config...) is one paragraph and exit status 1; KERAS_ROLLBACK_DEBUG=1 shows its traceback.
    command_line.run(main, flags_parser=config_checks.parse_flags_checking_config_fields)
