"""`python -m keras_rollback.export`: see `keras_rollback.export.cli`."""

from keras_rollback.export import cli

if __name__ == "__main__":
    cli.run()
