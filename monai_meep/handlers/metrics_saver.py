# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""A ``MetricsSaver`` whose per-subject CSVs keep the values' precision.

MONAI 1.6's ``write_metrics_reports`` formats float64 values with ``.4f``: a per-subject Brier score of 8.25e-4 is
written as ``0.0008``, a resolution of one whole unit of the paper's Brier (x1e-4) column. The bundles' evaluate
configs use this subclass in place of ``MetricsSaver``. float32 values are written by MONAI with ``str()``, i.e.
all of their ~7 significant digits, so the details are handed over as float32 for the duration of the write.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.handlers import MetricsSaver

__all__ = ["PreciseMetricsSaver"]


def _as_float32(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().to(torch.float32)
    if isinstance(v, np.ndarray):
        return v.astype(np.float32)
    return v


class PreciseMetricsSaver(MetricsSaver):
    """``monai.handlers.MetricsSaver`` writing per-subject values with ~7 significant digits instead of 4 decimals.

    Same arguments as ``MetricsSaver``. The engine's ``metric_details`` are restored after writing.

    Example::

        >>> saver = PreciseMetricsSaver(save_dir="eval", metrics="*", metric_details="*", summary_ops="*")
    """

    def __call__(self, engine: Any) -> None:
        details = getattr(engine.state, "metric_details", None)
        if not details:
            return super().__call__(engine)
        engine.state.metric_details = {k: _as_float32(v) for k, v in details.items()}
        try:
            super().__call__(engine)
        finally:
            engine.state.metric_details = details
