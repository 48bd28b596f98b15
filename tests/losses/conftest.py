"""Loss tests run on tiny tensors: one intra-op thread avoids OpenMP wake-up stalls on a shared 2-core machine
(torch's CPU log_softmax over dim 1 took ~10 ms per call on a 54-element tensor with 2 busy threads)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test under tests/losses runs with ``single_thread`` (tests/conftest.py)."""
