"""Kernel tests run Triton's CPU interpreter where there is no CUDA device (or skip when triton is absent).

``TRITON_INTERPRET`` must be set when ``triton.jit`` decorates the kernels (it returns an interpreted function then),
so it is set here, while the kernel modules are (re)loaded, and put back at once: other tests' CPU paths never see it
and never start running the (slow) interpreter through ``triton_available``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import pytest
import torch

INTERPRET = not torch.cuda.is_available()
KERNEL_MODULES = ("monai_meep.kernels.meep_fused", "monai_meep.kernels.histogram")

if INTERPRET and importlib.util.find_spec("triton") is not None:
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        for _name in KERNEL_MODULES:
            # reload: another test may have imported the kernels (compiled, not interpreted) before this folder
            importlib.reload(importlib.import_module(_name))
    finally:
        if _previous is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = _previous


@pytest.fixture
def device() -> torch.device:
    return torch.device("cpu" if INTERPRET else "cuda")


@pytest.fixture(autouse=True)
def _interpreter_during_test():
    """Triton checks the variable again at launch (e.g. its lazy imports), so keep it on during each kernel test."""
    if not INTERPRET:
        yield
        return
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    if previous is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = previous
