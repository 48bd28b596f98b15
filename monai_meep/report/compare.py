# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Several models' reports side by side, with the paired statistics of the tables.

The statistics are :mod:`monai_meep.report.stats`'s (docs/results.md).

Each model after the first is compared with the first (the reference) on the cases both scored: per metric, the
mean paired difference (model minus reference), its 95 % bootstrap interval over cases, the Wilcoxon signed-rank
p-value and a verdict (``better`` / ``worse`` only when the interval excludes 0), all from
:func:`monai_meep.report.stats.paired_difference` (one "seed": the cases are the subjects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd

from .stats import N_RESAMPLES, PairedDifference, paired_difference
from .tables import format_value, metric_columns

__all__ = ["compare_markdown", "paired_frame", "side_by_side"]


def _higher_is_better(metric: str) -> bool:
    return metric.split(" [")[0] == "DSC"  # everything else here is an error or a distance


def side_by_side(summaries: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """A row per metric, a ``mean`` and a ``pooled`` column per model (from each model's summary table)."""
    parts, order = [], []
    for name, s in summaries.items():
        part = s.set_index("metric")[["mean", "pooled"]]
        part.columns = [f"{name} {c}" for c in part.columns]
        parts.append(part)
        order += [m for m in part.index if m not in order]  # the reference's metric order first
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, axis=1).reindex(order).rename_axis("metric").reset_index()


def paired_frame(cases: Mapping[str, pd.DataFrame], n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """Paired differences of every model against the first, per metric, over the cases both scored.

    Args:
        cases: ``{model name: cases table}`` (:func:`~monai_meep.report.tables.cases_frame`), reference first.
        n_resamples: bootstrap resamples of the cases.

    Returns:
        A row per (model, metric): ``model``, ``reference``, ``metric`` and the fields of
        :class:`~monai_meep.report.stats.PairedDifference`.
    """
    names = list(cases)
    ref_name, ref = names[0], cases[names[0]]
    ref = ref[ref["status"] == "ok"].set_index("case")
    records = []
    for name in names[1:]:
        other = cases[name]
        other = other[other["status"] == "ok"].set_index("case")
        common = sorted(set(ref.index) & set(other.index))
        for metric in metric_columns(cases[name].reset_index(drop=True)):
            if metric not in ref.columns or not common:
                continue
            a = pd.to_numeric(other.loc[common, metric], errors="coerce").to_numpy(np.float64)[None]
            b = pd.to_numeric(ref.loc[common, metric], errors="coerce").to_numpy(np.float64)[None]
            res = paired_difference(a, b, _higher_is_better(metric), n_resamples=n_resamples)
            records.append({"model": name, "reference": ref_name, "metric": metric, **asdict(res)})
    cols = ["model", "reference", "metric", *PairedDifference.__dataclass_fields__]
    return pd.DataFrame.from_records(records, columns=cols).drop(columns=["n_seeds", "seeds_better"])


def compare_markdown(table: pd.DataFrame, paired: pd.DataFrame) -> str:
    """``compare.md``: the side-by-side table and the paired differences."""
    lines = ["# Models side by side", ""]
    cols = list(table.columns)
    lines += ["| " + " | ".join(cols) + " |", "|:---|" + "---:|" * (len(cols) - 1)]
    lines += ["| " + " | ".join(format_value(v) for v in r) + " |" for r in table.itertuples(index=False)]
    lines += [
        "",
        "## Paired differences (model minus reference, over the cases both scored)",
        "",
        f"95 % bootstrap interval (cases resampled, {N_RESAMPLES} resamples unless said, fixed RNG seed), "
        "Wilcoxon signed-rank p; verdict: the interval excludes 0 on the better / worse side, else inconclusive.",
        "",
        "| model | reference | metric | difference | 95 % CI | Wilcoxon p | pairs | verdict |",
        "|:---|:---|:---|---:|:---:|---:|---:|:---|",
    ]
    for r in paired.itertuples():
        ci = f"[{format_value(r.ci_low)}, {format_value(r.ci_high)}]"
        lines.append(
            f"| {r.model} | {r.reference} | {r.metric} | {format_value(r.mean_difference)} | {ci} | "
            f"{format_value(r.wilcoxon_p)} | {r.n_pairs} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"
