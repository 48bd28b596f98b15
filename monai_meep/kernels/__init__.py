# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Triton kernels, each beside the PyTorch reference it must match.

- :func:`fused_meep_regularizer` / :func:`fused_sum_count` (:mod:`.meep_fused`): the MEEP regulariser in one fused
  pass forward and one backward; reference :func:`monai_meep.losses.functional.regulariser_sum_count`.
- :func:`triton_histogram` (:mod:`.histogram`): the counts / positives / probability sums of
  :meth:`monai_meep.metrics.CalibrationHistogram.update`.
- :func:`triton_available` (:mod:`.dispatch`): whether a tensor can take the Triton path.

The CPU kernels (Numba) sit in :mod:`.meep_cpu` (the MEEP regulariser) and :mod:`monai_meep.metrics._histogram_numba`
(the histogram), both run in parallel by :mod:`.parts`; they are imported on first use.

Importing this package never needs triton; calling a kernel without it raises a ``ValueError``.
"""

from __future__ import annotations

import importlib
from typing import Any

# The Triton modules are imported on first use of one of their names (PEP 562), not with the package: importing
# ``monai_meep.kernels.parts`` (which the CPU histogram needs) must not decorate the Triton kernels, since
# ``@triton.jit`` reads ``TRITON_INTERPRET`` when the decorator runs.
_LAZY = {
    "HAS_TRITON": ".dispatch",
    "interpreter_on": ".dispatch",
    "triton_available": ".dispatch",
    "triton_histogram": ".histogram",
    "fused_meep_regularizer": ".meep_fused",
    "fused_sum_count": ".meep_fused",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HAS_TRITON",
    "fused_meep_regularizer",
    "fused_sum_count",
    "interpreter_on",
    "triton_available",
    "triton_histogram",
]
