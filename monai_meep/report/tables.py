# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The report's tables: ``cases.csv`` (a row per case), ``summary.csv`` (a row per metric) and ``summary.md``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .core import ReportState, histogram_metrics

__all__ = ["cases_frame", "format_value", "summary_frame", "summary_markdown"]

ID_COLUMNS = ["case", "status", "reason", "pred", "label", "spacing (mm)"]


def cases_frame(state: ReportState) -> pd.DataFrame:
    """A row per case (scored ones first, by ID; then the skipped ones with their reason)."""
    rows = [
        {"case": r.case, "status": r.status, "reason": r.reason, "pred": r.pred, "label": r.label,
         "spacing (mm)": r.spacing, **r.values}
        for r in state.records
    ]  # fmt: skip
    df = pd.DataFrame.from_records(rows)
    for c in ID_COLUMNS:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object)
    df = df[ID_COLUMNS + [c for c in df.columns if c not in ID_COLUMNS]]
    return df.sort_values(["status", "case"], key=lambda s: s.map({"ok": 0, "skipped": 1}) if s.name == "status" else s)


def metric_columns(cases: pd.DataFrame) -> list[str]:
    """The metric columns of a cases table (everything but the identifiers)."""
    return [c for c in cases.columns if c not in ID_COLUMNS and c != "voxels scored"]


def summary_frame(state: ReportState, cases: pd.DataFrame | None = None) -> pd.DataFrame:
    """A row per metric: over the scored cases ``n`` (not NaN), ``mean``, ``std`` (ddof=1), ``median``, and the
    ``pooled`` value of the merged histogram (calibration metrics; NaN for DSC / HD, which do not pool).

    ``inf`` (a Hausdorff distance with one empty mask) counts as a value, as in MONAI, so such a mean is ``inf``.
    """
    cases = cases_frame(state) if cases is None else cases
    ok = cases[cases["status"] == "ok"]
    pooled = histogram_metrics(state.histogram, state.convention) if state.histogram is not None else {}
    rows = []
    for col in metric_columns(cases):
        v = pd.to_numeric(ok[col], errors="coerce").to_numpy(np.float64)
        v = v[~np.isnan(v)]
        with np.errstate(invalid="ignore"):
            std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
        rows.append(
            {
                "metric": col,
                "n": int(v.size),
                "mean": float(np.mean(v)) if v.size else math.nan,
                "std": std,
                "median": float(np.median(v)) if v.size else math.nan,
                "pooled": pooled.get(col, math.nan),
            }
        )
    return pd.DataFrame.from_records(rows, columns=["metric", "n", "mean", "std", "median", "pooled"])


def format_value(v: Any) -> str:
    """Four significant digits; ``n/a`` for NaN."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if math.isnan(f) else f"{f:.4g}"


def _markdown_table(df: pd.DataFrame) -> list[str]:
    cols = list(df.columns)
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(cols))) + "|",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(format_value(v) for v in row) + " |")
    return lines


def summary_markdown(state: ReportState, summary: pd.DataFrame, cases: pd.DataFrame, title: str = "") -> str:
    """``summary.md``: the convention, the summary table and the skipped cases."""
    ok = cases[cases["status"] == "ok"]
    skipped = cases[cases["status"] != "ok"]
    lines = [
        f"# Calibration report{': ' + title if title else ''}",
        "",
        f"{len(ok)} case(s) scored, {len(skipped)} skipped; {state.num_classes or '?'} classes; "
        f"{state.convention.describe()}. `mean` / `std` / `median` over cases; `pooled`: every scored voxel of every "
        "case in one histogram (exact: int64 counts, float64 sums).",
        "",
        *_markdown_table(summary),
        "",
    ]
    if len(skipped):
        lines += ["## Skipped cases", "", "| case | file | reason |", "|:---|:---|:---|"]
        lines += [f"| {r.case} | {r.pred or r.label} | {r.reason} |" for r in skipped.itertuples()]
        lines.append("")
    return "\n".join(lines)
