"""`python -m keras_rollback.evaluation`: see `keras_rollback.evaluation.cli`."""

from keras_rollback.evaluation import cli

if __name__ == "__main__":
    cli.run()
