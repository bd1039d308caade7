#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend, each in its own process
# (a Keras process is bound to the backend it imported first).
set -u
cd "$(dirname "$0")/.."
status=0
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=${backend} ==="
  # The slowest tests of each backend are listed, to keep an eye on the suite's time.
  KERAS_BACKEND="${backend}" python -m pytest tests -q -p no:cacheprovider --durations=15 "$@" || status=1
done
exit "${status}"
