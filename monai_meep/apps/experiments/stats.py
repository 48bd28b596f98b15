# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Paired statistics of a Table 1 folder: each row against its base row, per metric, with intervals.

The paper reports the mean (std) of three models only. Here every regularised or post-hoc row is compared with its
base row (Dice or CE) on the same (seed, test subject) pairs, as ``docs/results.md`` explains, with the library's
:func:`monai_meep.report.stats.paired_difference` (mean paired difference in the column's unit, 95 % bootstrap
interval over test subjects, Wilcoxon signed-rank p-value, seeds in which the row is better). Pairs where either
value is not finite (a Hausdorff distance of an empty prediction) are left out and counted.

``python -m monai_meep.apps.experiments stats <folder>`` recomputes ``paired.csv`` / ``paired.md`` (and ``claims.md``,
see :mod:`monai_meep.apps.experiments.claims`) from the committed ``per_subject/*.csv`` of a results folder.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from monai_meep.report.stats import N_RESAMPLES, RNG_SEED, PairedDifference, paired_difference

__all__ = [
    "COMPARISONS",
    "EXTENDED_BASES",
    "METRICS",
    "add_parser",
    "folder_task",
    "paired_markdown",
    "paired_table",
    "read_per_subject",
    "write_paired",
]

# per-subject CSV column -> higher is better (the columns of table_format, in its order)
METRICS: dict[str, bool] = {
    "DSC": True,
    "HD (mm)": False,
    "Brier (x1e-4)": False,
    "Brier+": False,
    "ECE (x1e-3)": False,
    "HD95 (mm)": False,
}

# the extended rows' base losses: the loss each one modifies (Dice + CE + mL1-ACE: the Dice row, its main term)
EXTENDED_BASES: dict[str, tuple[str, ...]] = {
    "CE": ("CE+LS", "SVLS", "MbLS", "NACL", "FLSD-53"),
    "Dice": ("Dice+LS", "Dice+CE+mL1-ACE"),
}

# (row, reference row): every regularised / post-hoc row against its base loss first, then the pairs the paper's
# claims need (MEEP vs the all-voxel penalty, vs focal loss, vs post-hoc calibration, KL vs entropy).
COMPARISONS: list[tuple[str, str]] = [
    *(
        (f"{base}{suffix}", base)
        for base in ("Dice", "CE")
        for suffix in ("+PS", "+IR", "+H(Y)", "+H(Y_w)", "+KL(Y_w)")
    ),
    ("FL", "CE"),
    ("FL", "Dice"),
    *(
        (f"{base}{meep}", f"{base}{other}")
        for base in ("Dice", "CE")
        for meep in ("+H(Y_w)", "+KL(Y_w)")
        for other in ("+H(Y)", "+PS", "+IR")
    ),
    *((f"{base}+KL(Y_w)", f"{base}+H(Y_w)") for base in ("Dice", "CE")),
    *((f"{base}{meep}", "FL") for base in ("Dice", "CE") for meep in ("+H(Y_w)", "+KL(Y_w)")),
    # the extended table (issue 16): each of the field's losses against its base loss, then MEEP-KL against it
    *((row, base) for base, rows in EXTENDED_BASES.items() for row in rows),
    ("FLSD-53", "FL"),
    *((f"{base}+KL(Y_w)", row) for base, rows in EXTENDED_BASES.items() for row in rows),
    # the evaluation-time uncertainty baselines against the model(s) they run, then MEEP-KL against them
    ("Dice+MC dropout", "Dice"),
    ("Dice+MC dropout", "Dice+Dropout"),
    ("Dice+Dropout", "Dice"),
    ("Dice+TTA", "Dice"),
    ("Ensemble(Dice)", "Dice"),
    ("Ensemble(Dice+KL(Y_w))", "Dice+KL(Y_w)"),
    ("Ensemble(Dice+KL(Y_w))", "Ensemble(Dice)"),
    *(("Dice+KL(Y_w)", row) for row in ("Dice+MC dropout", "Dice+TTA", "Ensemble(Dice)")),
]


def read_per_subject(folder: str | Path) -> Any:
    """All ``per_subject/*.csv`` of a Table 1 folder as one ``pandas.DataFrame`` (row, seed, subject, metrics).

    Raises:
        FileNotFoundError: the folder has no ``per_subject/*.csv``.
        ValueError: a file lacks the ``row`` / ``seed`` / ``subject`` columns, or a (row, seed, subject) repeats.
    """
    import pandas as pd

    files = sorted((Path(folder) / "per_subject").glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no per_subject/*.csv in {folder}: not a Table 1 results folder.")
    frames = []
    for f in files:
        df = pd.read_csv(f)
        missing = {"row", "seed", "subject"} - set(df.columns)
        if missing:
            raise ValueError(f"{f} lacks the columns {sorted(missing)}.")
        frames.append(df)
    data = pd.concat(frames, ignore_index=True)
    dup = data.duplicated(["row", "seed", "subject"])
    if dup.any():
        first = data.loc[dup, ["row", "seed", "subject"]].iloc[0].tolist()
        raise ValueError(f"(row, seed, subject) {first} appears more than once in {folder}/per_subject.")
    return data


def _aligned(data: Any, row: str, reference: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(S, N)`` arrays of ``row`` and ``reference`` on their common seeds and subjects (None: nothing common)."""
    wide = data[data["row"].isin([row, reference])].pivot_table(
        index="seed", columns=["row", "subject"], values=metric, aggfunc="first", dropna=False
    )
    if row not in wide.columns.get_level_values(0) or reference not in wide.columns.get_level_values(0):
        return None
    a, b = wide[row], wide[reference]
    subjects = sorted(set(a.columns) & set(b.columns))
    seeds = [s for s in wide.index if a.loc[s, subjects].notna().any() and b.loc[s, subjects].notna().any()]
    if not subjects or not seeds:
        return None
    return a.loc[seeds, subjects].to_numpy(float), b.loc[seeds, subjects].to_numpy(float)


def paired_table(
    data: Any,
    comparisons: Sequence[tuple[str, str]] = COMPARISONS,
    metrics: dict[str, bool] | None = None,
    **kwargs: Any,
) -> Any:
    """Every ``(row, reference)`` of ``comparisons`` present in ``data`` x every metric, as a long DataFrame.

    Args:
        data: per-subject values (:func:`read_per_subject`).
        comparisons: ``(row, reference)`` pairs; pairs with a row missing from ``data`` are skipped.
        metrics: metric column -> higher is better (default :data:`METRICS`, the columns present).
        kwargs: passed to :func:`paired_difference` (``n_resamples``, ``confidence``, ``rng_seed``).
    """
    import pandas as pd

    metrics = {m: h for m, h in (metrics or METRICS).items() if m in data.columns}
    records = []
    for row, ref in comparisons:
        for metric, higher in metrics.items():
            arrays = _aligned(data, row, ref, metric)
            if arrays is None:
                continue
            res = paired_difference(*arrays, higher_is_better=higher, **kwargs)
            records.append({"row": row, "reference": ref, "metric": metric, **asdict(res)})
    columns = ["row", "reference", "metric", *PairedDifference.__dataclass_fields__]
    return pd.DataFrame.from_records(records, columns=columns)


def _fmt(v: float, digits: int = 3) -> str:
    return f"{v:+.{digits}f}" if math.isfinite(v) else "n/a"


def paired_markdown(table: Any, title: str = "") -> str:
    """``paired.csv`` as markdown: one table per metric, a line per comparison."""
    lines = [
        f"# Paired differences{': ' + title if title else ''}",
        "",
        "Row minus reference over (seed, test subject) pairs, in the table's units; 95 % bootstrap interval "
        f"(subjects resampled, seeds paired, {N_RESAMPLES} resamples, RNG seed {RNG_SEED}); Wilcoxon "
        "signed-rank p; seeds in which the row's per-model mean is better. Verdict: the interval excludes 0 "
        "on the better / worse side, else inconclusive.",
        "",
    ]
    if len(table) == 0:
        return "\n".join(lines + ["No comparison has both rows yet.", ""])
    for metric in dict.fromkeys(table["metric"]):
        sub = table[table["metric"] == metric]
        direction = "higher" if bool(sub["higher_is_better"].iloc[0]) else "lower"
        lines += [
            f"## {metric} ({direction} is better)",
            "",
            "| row | reference | difference | 95 % CI | Wilcoxon p | seeds better | verdict |",
            "|:---|:---|---:|:---:|---:|---:|:---|",
        ]
        for r in sub.itertuples():
            ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
            p = f"{r.wilcoxon_p:.3g}" if math.isfinite(r.wilcoxon_p) else "n/a"
            dropped = f" ({r.n_dropped} pairs dropped)" if r.n_dropped else ""
            lines.append(
                f"| {r.row} | {r.reference} | {_fmt(r.mean_difference)} | {ci} | {p} | "
                f"{r.seeds_better}/{r.n_seeds} | {r.verdict}{dropped} |"
            )
        lines.append("")
    return "\n".join(lines)


def folder_task(folder: str | Path) -> str | None:
    """The task (``"wmh"`` / ``"la"``) recorded in a results folder's ``experiment.json``, if any."""
    from monai_meep.apps.experiments.manifest import read_json

    return (read_json(Path(folder) / "experiment.json") or {}).get("task")


def write_paired(folder: str | Path, title: str = "", task: str | None = None, table: Any = None) -> list[str]:
    """Recompute ``paired.csv``, ``paired.md`` and ``claims.md`` of a Table 1 folder from its per-subject CSVs.

    Args:
        folder: a Table 1 results folder (``per_subject/*.csv``).
        title: heading of the markdown files (default: the folder name).
        task: ``"wmh"`` / ``"la"``, for the paper's values beside the claims (default: ``experiment.json``'s).
        table: the folder's :func:`paired_table`, when the caller has computed it already (it is not recomputed).

    Returns:
        The paths written.
    """
    from monai_meep.apps.experiments.claims import claims_markdown
    from monai_meep.apps.experiments.manifest import atomic_write_text

    folder = Path(folder)
    table = paired_table(read_per_subject(folder)) if table is None else table
    title = title or folder.name
    task = task or folder_task(folder)
    return [
        atomic_write_text(folder / "paired.csv", table.to_csv(index=False, float_format="%.10g")),
        atomic_write_text(folder / "paired.md", paired_markdown(table, title)),
        atomic_write_text(folder / "claims.md", claims_markdown(table, title, task)),
    ]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``stats`` on the ``python -m monai_meep.apps.experiments`` parser."""
    p = subparsers.add_parser(
        "stats",
        help="paired statistics and claims of results folders, from their CSVs",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("folders", nargs="+", help="Table 1 results folders (holding per_subject/*.csv)")
    p.add_argument(
        "--summary",
        default="",
        metavar="FILE",
        help="also write one markdown table of every claim's verdict across the folders to FILE",
    )
    p.set_defaults(func=_main)
    return p


def _main(args: argparse.Namespace) -> int:
    from monai_meep.apps.experiments.claims import claims_summary
    from monai_meep.apps.experiments.manifest import atomic_write_text

    tables = {}
    for folder in args.folders:
        table, task = paired_table(read_per_subject(folder)), folder_task(folder)  # the bootstrap runs once a folder
        for path in write_paired(folder, task=task, table=table):
            print(f"[stats] wrote {path}")
        tables[Path(folder).name] = (table, task)
    if args.summary:
        legend = (
            "Each cell: verdict (comparisons that hold / are contradicted / are inconclusive); the comparisons "
            "and their intervals are in each folder's claims.md.\n\n"
        )
        print(f"[stats] wrote {atomic_write_text(args.summary, legend + claims_summary(tables))}")
    return 0
