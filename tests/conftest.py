"""Shared pytest fixtures: the read-only test data beside the checkout."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("KERAS_ROLLBACK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
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
