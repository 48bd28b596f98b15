"""Shared pytest configuration: CPU-friendly defaults and the GPU marker."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property tests: few cheap examples on tiny tensors (CI time), no deadline (a shared 2-core machine is noisy).
settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Keep the suite predictable on 2 CPU cores.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` cleanly when no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _quiet_monai_config_notice():
    """MONAI 1.6 warns on every bundle config parse; filter it in tests only (not globally)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*security.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*eval.*", category=UserWarning)
        yield


@pytest.fixture
def single_thread():
    """Pin torch to one intra-op thread for the test, then restore the previous count.

    For tests of many tiny torch ops: on a shared 2-core machine extra intra-op threads only add OpenMP wake-up
    contention (ops up to 100x slower). Use per module with ``pytestmark = pytest.mark.usefixtures("single_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def shared_dir() -> Path:
    return SHARED_DIR
