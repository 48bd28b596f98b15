# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""When the Triton kernels can run: triton importable and the tensor on CUDA, or the CPU interpreter switched on.

The plain PyTorch code in :mod:`monai_meep.losses` / :mod:`monai_meep.metrics` stays the CPU path, the fallback and
the test reference; a caller asks :func:`triton_available` with its tensor and takes the fused path only then.
"""

from __future__ import annotations

import os

import torch
from monai.utils import optional_import

_, HAS_TRITON = optional_import("triton")

__all__ = ["HAS_TRITON", "interpreter_on", "triton_available"]


def interpreter_on() -> bool:
    """True when ``TRITON_INTERPRET=1`` (Triton then runs ``@triton.jit`` kernels on CPU tensors, slowly)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_available(tensor: torch.Tensor | None = None) -> bool:
    """Whether the Triton kernels can run on ``tensor``.

    Args:
        tensor: the tensor the kernel would read; None asks only whether triton is importable and a CUDA device (or
            the interpreter) is there.

    Returns:
        True when triton imports and the tensor lives on a CUDA device, or when the interpreter is on (any device).
        Never raises.

    Example:
        >>> triton_available(torch.zeros(1))  # a CPU tensor without TRITON_INTERPRET=1
        False
    """
    if not HAS_TRITON:
        return False
    if interpreter_on():
        return True
    if tensor is None:
        return torch.cuda.is_available()
    return tensor.is_cuda
