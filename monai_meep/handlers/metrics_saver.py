# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""A ``MetricsSaver`` whose per-subject CSVs keep the values' precision.

MONAI 1.6's ``write_metrics_reports`` formats float64 values with ``.4f``: a per-subject Brier score of 8.25e-4 is
written as ``0.0008``, a resolution of one whole unit of the paper's Brier (x1e-4) column. The bundles' evaluate
configs use this subclass in place of ``MetricsSaver``. float32 values are written by MONAI with ``str()``, i.e.
all of their ~7 significant digits, so the details are handed over as float32 for the duration of the write.
``class_labels`` names the class columns (MONAI's writer supports it, its ``MetricsSaver`` does not pass it): the
bundles write ``foreground`` where MONAI would write ``class0`` (the first *reported* class, not class 0).
``region`` says which part of the image the numbers cover (the LA bundle scores a heart-centred crop, the WMH bundle
the whole volume): a last ``region`` column of every ``<metric>_raw.csv`` and ``<metric>_summary.csv``, and a third
field of every ``metrics.csv`` line (MONAI's ``name,value`` lines have no header).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from monai.handlers import MetricsSaver
from monai.handlers.utils import write_metrics_reports
from monai.utils import string_list_all_gather

from monai_meep.utils import atomic_open

__all__ = ["PreciseMetricsSaver"]


def _as_float32(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().to(torch.float32)
    if isinstance(v, np.ndarray):
        return v.astype(np.float32)
    return v


class PreciseMetricsSaver(MetricsSaver):
    """``monai.handlers.MetricsSaver`` writing per-subject values with ~7 significant digits instead of 4 decimals,
    with named class columns.

    Same arguments as ``MetricsSaver``, plus:

    Args:
        class_labels: names of the class columns of every ``metric_details`` table (``None``: MONAI's ``class0``,
            ``class1``, ...). Each table must have that many columns.
        region: the image region the metrics cover (e.g. ``"whole volume"``), written to every file as described
            in the module docstring (``None``: MONAI's layout).

    Raises:
        ValueError: ``region`` holds the delimiter, a quote or a line break; at write time, a ``metric_details``
            table whose class count differs from ``class_labels``.

    Example::

        >>> saver = PreciseMetricsSaver(save_dir="eval", metrics="*", metric_details="*", summary_ops="*",
        ...                             class_labels=["foreground"], region="whole volume")
    """

    def __init__(
        self, *args: Any, class_labels: Sequence[str] | None = None, region: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.class_labels = None if class_labels is None else [str(c) for c in class_labels]
        self.region = None if region in (None, "") else str(region)
        if self.region is not None and any(c in self.region for c in (self.deli, '"', "\n", "\r")):
            raise ValueError(f"region {self.region!r} must not hold the delimiter {self.deli!r}, quotes or newlines.")

    def __call__(self, engine: Any) -> None:
        details = getattr(engine.state, "metric_details", None)
        if details:
            engine.state.metric_details = {k: _as_float32(v) for k, v in details.items()}
        try:
            if self.class_labels is None and self.region is None:
                super().__call__(engine)
            else:
                self._write(engine)
        finally:
            if details:
                engine.state.metric_details = details

    def _write(self, engine: Any) -> None:
        """``MetricsSaver.__call__`` with ``class_labels`` passed on to MONAI's ``write_metrics_reports``, then the
        ``region`` added."""
        world = idist.get_world_size()
        if self.save_rank >= world:
            raise ValueError("target save rank is greater than the distributed group size.")
        images = string_list_all_gather(strings=self._filenames) if world > 1 else self._filenames
        if idist.get_rank() != self.save_rank:
            return

        def chosen(names: Any, key: str) -> bool:
            return names is not None and (key in names or "*" in names)

        metrics = {k: v for k, v in engine.state.metrics.items() if chosen(self.metrics, k)}
        details = {k: v for k, v in (getattr(engine.state, "metric_details", None) or {}).items()
                   if chosen(self.metric_details, k)}  # fmt: skip
        for k, v in details.items():
            cols = 1 if v.ndim < 2 else v.shape[1]
            if self.class_labels is not None and cols != len(self.class_labels):
                raise ValueError(f"metric details {k!r} have {cols} class column(s); class_labels {self.class_labels}.")
        write_metrics_reports(
            save_dir=self.save_dir,
            images=images or None,
            metrics=metrics,
            metric_details=details,
            summary_ops=self.summary_ops,
            deli=self.deli,
            output_type=self.output_type,
            class_labels=self.class_labels,
        )
        if self.region is not None:
            files = (["metrics.csv"] if metrics else []) + [
                f"{k}_{kind}.csv"
                for k in details
                for kind in ("raw", "summary")
                if kind == "raw" or self.summary_ops is not None
            ]
            for name in files:
                self._add_region(os.path.join(self.save_dir, name), header=name != "metrics.csv")

    def _add_region(self, path: str, header: bool) -> None:
        """Append the ``region`` field to every line of ``path`` (the header gets the column name)."""
        if not os.path.isfile(path):
            return
        with open(path) as f:
            lines = f.read().splitlines()
        out = [f"{line}{self.deli}{'region' if header and i == 0 else self.region}" for i, line in enumerate(lines)]
        with atomic_open(path) as f:
            f.write("\n".join(out) + "\n")
