"""Shared pytest fixtures: the read-only test data beside the checkout; JAX's compilation cache."""

import atexit
import os
import pathlib
import shutil
import tempfile

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("KERAS_ROLLBACK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)

# JAX compiles every new model's steps; the suite builds the same tiny models over and over,
# in this process and in the jobs it starts (fault injection, experiments). A compilation
# cache for this session (inherited by those jobs) serves the repeats: the same compiled
# programs, so the same numbers. Measured on 2 cores: fault_injection_test and
# experiments_main_test took 129 s with it, cold, against 221 s without.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _JAX_CACHE = tempfile.mkdtemp(prefix="keras-rollback-tests-jax-cache-")
    atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
    os.environ.update(
        JAX_COMPILATION_CACHE_DIR=_JAX_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


@pytest.fixture
def mini_market1501():
    """The 96 real Market-1501 crops in `../shared/data/mini-market1501`."""
    root = SHARED_DATA / "mini-market1501"
    if not root.is_dir():
        pytest.skip(
            f"real Market-1501 sample not found at {root} (only CI and dev machines have it)"
        )
    return root


def pytest_collection_modifyitems(config, items):
    # Probing the internet from a test is itself a side effect (and CI is offline), so tests
    # that download weights or datasets run only when asked for.
    if os.environ.get("KERAS_ROLLBACK_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(
        reason="needs network access (ImageNet weights or a dataset download); "
        "set KERAS_ROLLBACK_NETWORK_TESTS=1 to run it"
    )
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)
