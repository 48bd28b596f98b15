# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Table 1 in the paper's layout: aggregation over subjects and seeds, markdown / CSV output, figures.

Aggregation, exactly: for each row and seed, the **per-model mean over test subjects** of each metric; the table
cell is the **mean (sample std, ddof=1) over seeds** of those per-model means. Non-finite per-subject values (a
Hausdorff distance of an empty prediction is ``inf``, as in MONAI) are left out of the per-model mean and counted in
``n_nonfinite``. The CSV also carries the std over all (subject, seed) pairs, the spread the paper's table appears to
show, so either reading can be checked.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_meep.apps.bundle.runner import read_calibration_state, read_metrics
from monai_meep.apps.experiments.manifest import atomic_write_json, atomic_write_text, read_json, utc_now

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "aggregate",
    "best_cells",
    "export_results",
    "format_markdown",
    "plot_rows",
    "table_csv",
    "per_subject_csv",
    "pooled_curve",
    "pooled_histogram",
    "write_outputs",
]

# (metric file stem written by the bundle's evaluate.json on the test split, column header, scale, higher_is_better)
COLUMNS: list[tuple[str, str, float, bool]] = [
    ("test_mean_dice", "DSC", 1.0, True),
    ("test_hd_mm", "HD (mm)", 1.0, False),
    ("test_brier", "Brier (x1e-4)", 1e4, False),
    ("test_brier_plus", "Brier+", 1.0, False),
    ("test_ece", "ECE (x1e-3)", 1e3, False),
]
# written to the CSV and per-subject files, not to the paper-layout markdown
EXTRA_COLUMNS: list[tuple[str, str, float, bool]] = [("test_hd95_mm", "HD95 (mm)", 1.0, False)]
DECIMALS = 3  # as in the paper's table

Metrics = Mapping[str, Mapping[str, float]]  # metric stem -> subject -> value


def _mean(v: Sequence[float]) -> float:
    return sum(v) / len(v) if v else math.nan


def _std(v: Sequence[float], ddof: int = 1) -> float:
    if len(v) <= ddof:
        return math.nan
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - ddof))


def aggregate(results: Mapping[str, Mapping[int, Metrics]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{row: {seed: {metric: {subject: value}}}}`` -> ``{row: {header: cell}}`` for every column.

    A cell holds ``mean`` / ``std`` (over seeds of the per-model subject means), ``seed_means`` (the per-model
    means), ``n_seeds``, ``n_subjects`` (per model), ``n_nonfinite`` and ``subject_std`` (over all subject-seed
    pairs, ddof 1). Values are in the column's unit (e.g. Brier x1e-4).
    """
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row, seeds in results.items():
        table[row] = {}
        for key, header, scale, _ in COLUMNS + EXTRA_COLUMNS:
            seed_means, pooled, n_sub, n_bad = [], [], [], 0
            for seed in sorted(seeds):
                values = [float(v) * scale for v in seeds[seed].get(key, {}).values()]
                finite = [v for v in values if math.isfinite(v)]
                n_bad += len(values) - len(finite)
                n_sub.append(len(values))
                pooled += finite
                if finite:
                    seed_means.append(_mean(finite))
            table[row][header] = {
                "mean": _mean(seed_means),
                "std": _std(seed_means),
                "seed_means": seed_means,
                "n_seeds": len(seed_means),
                "n_subjects": max(n_sub) if n_sub else 0,
                "n_nonfinite": n_bad,
                "subject_std": _std(pooled),
            }
    return table


def best_cells(table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, set[str]]:
    """Rows holding the best mean of each column, compared as displayed (rounded), ties all marked."""
    best: dict[str, set[str]] = {}
    for _, header, _, higher in COLUMNS + EXTRA_COLUMNS:
        vals = {r: round(c[header]["mean"], DECIMALS) for r, c in table.items() if math.isfinite(c[header]["mean"])}
        if not vals:
            best[header] = set()
            continue
        target = max(vals.values()) if higher else min(vals.values())
        best[header] = {r for r, v in vals.items() if v == target}
    return best


def _cell(c: Mapping[str, Any]) -> str:
    if not math.isfinite(c["mean"]):
        return "n/a"
    std = f"{c['std']:.{DECIMALS}f}" if math.isfinite(c["std"]) else "-"
    return f"{c['mean']:.{DECIMALS}f} ({std})"


def format_markdown(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]],
    bold_best: bool = True,
    columns: Sequence[tuple[str, str, float, bool]] = COLUMNS,
) -> str:
    """The paper-layout markdown table: one row per training loss / post-hoc method, ``mean (std)`` cells, the best
    mean per column in bold."""
    headers = ["Training loss"] + [c[1] for c in columns]
    best = best_cells(table) if bold_best else {}
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + ["---:"] * len(columns)) + "|"]
    for row, cells in table.items():
        out = [row]
        for _, header, _, _ in columns:
            text = _cell(cells[header])
            out.append(f"**{text}**" if row in best.get(header, ()) else text)
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def table_csv(table: Mapping[str, Mapping[str, Mapping[str, Any]]], extra: Mapping[str, Any] | None = None) -> str:
    """Long-format CSV: one line per (row, metric) with mean, std, the per-seed means, counts and best flag."""
    best = best_cells(table)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = dict(extra or {})
    w.writerow(
        [
            *extra,
            "row",
            "metric",
            "mean",
            "std_over_seeds",
            "n_seeds",
            "seed_means",
            "n_subjects",
            "n_nonfinite",
            "std_over_subjects",
            "best",
        ]
    )
    for row, cells in table.items():
        for _, header, _, _ in COLUMNS + EXTRA_COLUMNS:
            c = cells[header]
            w.writerow(
                [
                    *extra.values(),
                    row,
                    header,
                    repr(c["mean"]),
                    repr(c["std"]),
                    c["n_seeds"],
                    ";".join(repr(v) for v in c["seed_means"]),
                    c["n_subjects"],
                    c["n_nonfinite"],
                    repr(c["subject_std"]),
                    int(row in best[header]),
                ]
            )
    return buf.getvalue()


def per_subject_csv(row: str, seeds: Mapping[int, Metrics]) -> str:
    """One line per (seed, subject) with every metric in the paper's units."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = COLUMNS + EXTRA_COLUMNS
    w.writerow(["row", "seed", "subject"] + [c[1] for c in cols])
    for seed in sorted(seeds):
        subjects = sorted({s for key, *_ in cols for s in seeds[seed].get(key, {})})
        for s in subjects:
            vals = [seeds[seed].get(key, {}).get(s, math.nan) * scale for key, _, scale, _ in cols]
            w.writerow([row, seed, s] + [format(float(v), ".8g") for v in vals])
    return buf.getvalue()


def write_text(path: str | os.PathLike, text: str) -> str:
    """Atomic write (see ``manifest.atomic_write_text``)."""
    return atomic_write_text(path, text)


def _read_bins(eval_dir: Path) -> dict[str, list[float]] | None:
    """Foreground rows of the last epoch of ``reliability.csv`` (written by ``ReliabilityDiagramSaver``): the
    fallback for folders written before ``calibration_state.pt``."""
    path = eval_dir / "reliability.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["class"] == "1"]
    if not rows:
        return None
    last = max(int(r["epoch"]) for r in rows)
    rows = sorted((r for r in rows if int(r["epoch"]) == last), key=lambda r: int(r["bin"]))
    num = lambda r, k: float(r[k]) if r[k] not in ("", "nan") else math.nan  # noqa: E731
    return {
        "count": [float(r["count"]) for r in rows],
        "confidence": [num(r, "confidence") for r in rows],
        "frequency": [num(r, "frequency") for r in rows],
        "lower": [float(r["lower"]) for r in rows],
        "upper": [float(r["upper"]) for r in rows],
    }


def pooled_histogram(eval_dirs: Sequence[Path]) -> Any:
    """The exact pooled histogram of several evaluations (the seeds of a row): their ``calibration_state.pt`` merged
    with ``CalibrationHistogram.merge`` (int64 counts add exactly). ``None`` when any folder has no state file (one
    written before it existed)."""
    states = [read_calibration_state(d) for d in eval_dirs]
    if not states or any(h is None for h in states):
        return None
    pooled = states[0].clone()
    for h in states[1:]:
        pooled.merge(h)
    return pooled


def pooled_curve(eval_dirs: Sequence[Path], num_bins: int = 10) -> Any:
    """Foreground reliability curve (a one-row :class:`~monai_meep.metrics.ReliabilityCurve`) of several models (the
    seeds of a row) pooled, or ``None`` when no folder has bins.

    From the evaluations' exact states when every folder has one (:func:`pooled_histogram`); else, for older folders,
    from their ``reliability.csv`` bins: counts summed, per-bin mean confidence and observed frequency
    count-weighted (exact up to the CSV's rounding, since each bin's mean is a sum over its voxels divided by its
    count)."""
    import torch

    from monai_meep.metrics import ReliabilityCurve, reliability_curve_from_histogram

    hist = pooled_histogram(eval_dirs)
    if hist is not None:
        return reliability_curve_from_histogram(hist, num_bins, include_background=True).row(1)
    parts = [b for b in (_read_bins(Path(d)) for d in eval_dirs) if b is not None]
    if not parts:
        return None
    nb = len(parts[0]["count"])
    count = [sum(p["count"][i] for p in parts) for i in range(nb)]

    def wmean(key: str, i: int) -> float:
        num = sum(p["count"][i] * p[key][i] for p in parts if p["count"][i] > 0)
        return num / count[i] if count[i] > 0 else math.nan

    row = lambda v, dtype=torch.float64: torch.tensor([v], dtype=dtype)  # noqa: E731
    return ReliabilityCurve(
        confidence=row([wmean("confidence", i) for i in range(nb)]),
        frequency=row([wmean("frequency", i) for i in range(nb)]),
        counts=row([int(c) for c in count], torch.int64),
        bin_lower=row(parts[0]["lower"]),
        bin_upper=row(parts[0]["upper"]),
        classes=[1],
    )


def plot_rows(out: Path, eval_dirs: Mapping[str, Sequence[Path]], title: str) -> list[str]:
    """One reliability-diagram figure and one probability-histogram figure comparing the rows (paper Fig. 2), each
    row's bins pooled over its seeds (10 equal-width bins, test split, foreground)."""
    from monai_meep.visualize import plot_probability_histogram, plot_reliability_diagram

    curves = {row: c for row, dirs in eval_dirs.items() if (c := pooled_curve(dirs)) is not None}
    if not curves:
        return []
    eces = {row: float(c.ece[0]) for row, c in curves.items()}  # ECE on the plotted bins (ReliabilityCurve.ece)
    size = (2.6, 2.8)
    # six panels a row: the paper's Dice rows, then its CE rows, then FL
    rel = plot_reliability_diagram(
        curves,
        ece=eces,
        title=f"{title}: reliability, seeds pooled",
        save_path=out / "reliability.png",
        panel_size=size,
        dpi=90,
        ncols=6,
    )
    hist = plot_probability_histogram(
        curves,
        title=f"{title}: foreground probability, seeds pooled",
        save_path=out / "probability_histogram.png",
        panel_size=(size[0], 2.4),
        dpi=90,
        ncols=6,
    )
    for fig in (rel, hist):
        fig.clear()
    return [str(out / "reliability.png"), str(out / "probability_histogram.png")]


def write_outputs(
    out: Path,
    task: str,
    budget: str,
    backbone: str,
    rows: Sequence,
    seeds: Sequence[int],
    units: Sequence[Any],
    env: dict[str, Any],
    common: dict[str, Any],
    dataset_dir: str,
    title: str | None = None,
    figures: bool = True,
) -> dict[str, Any]:
    """Table, per-subject CSVs, figures and manifest from the finished units (a partial table says so).

    ``units`` are the runner's ``table1.Unit`` s (``row``, ``seed``, ``eval_dir``, ``marker``, ``done()``).
    """
    cells = {(u.row, u.seed): u for u in units if u.row is not None}
    results: dict[str, dict[int, Any]] = {}
    eval_dirs: dict[str, list[Path]] = {}
    for name, slug, _, _ in rows:
        results[name] = {s: read_metrics(cells[(name, s)].eval_dir) for s in seeds if cells[(name, s)].done()}
        eval_dirs[name] = [cells[(name, s)].eval_dir for s in seeds if cells[(name, s)].done()]
        if results[name]:
            write_text(out / "per_subject" / f"{slug}.csv", per_subject_csv(name, results[name]))
    table = aggregate(results)
    n_done = sum(u.done() for u in cells.values())
    complete = n_done == len(cells)
    data = dataset_dir or f"{task.upper()} phantom"
    title = title or f"{task.upper()} ({data}), {backbone}, budget {budget}"
    n_sub = max((c["DSC"]["n_subjects"] for c in table.values()), default=0)
    note = (
        f"\n{title}. Each cell: mean (std) over {len(seeds)} seeds of the per-model mean over the {n_sub} test "
        "subjects (sample std, ddof 1; '-' with one seed). Brier x1e-4, ECE x1e-3 (15 bins), HD max in mm. "
        "Best mean per column in bold. PS / IR: Platt / isotonic calibrators fitted on the validation split "
        "of the Dice / CE model of the same seed.\n"
    )
    if any(method == "ensemble" for *_, method in rows):
        note += (
            "Ensemble rows: one deep ensemble of the row's seeds' models (mean probability); its per-subject values "
            "stand in every seed's column, so its std is 0 and its paired differences are the ensemble minus each "
            "single model. MC dropout: 10 passes of the Dice model trained with dropout 0.1; TTA: the mean over all "
            "flips of the spatial axes.\n"
        )
    bad = {r: c["HD (mm)"]["n_nonfinite"] for r, c in table.items() if c["HD (mm)"]["n_nonfinite"]}
    if bad:
        note += f"\nHD undefined (empty prediction or label) for (row: subject-models) {bad}; left out of the means.\n"
    if not complete:
        note += f"\n**Partial: {n_done} of {len(cells)} runs finished; rerun the same command to continue.**\n"
    write_text(out / "table1.md", f"# Table 1: {title}\n\n" + format_markdown(table) + note)
    write_text(out / "table1.csv", table_csv(table, {"task": task, "backbone": backbone, "budget": budget}))
    files = [str(out / "table1.md"), str(out / "table1.csv")]
    try:
        if figures:
            files += plot_rows(out, {r: d for r, d in eval_dirs.items() if d}, f"{task.upper()} {backbone} {budget}")
    except ImportError as e:  # matplotlib missing: the table is still complete
        print(f"[table1] figures skipped: {e}", file=sys.stderr)
    if results and any(results.values()):
        from monai_meep.apps.experiments.stats import write_paired

        files += write_paired(out, title=title, task=task)
    # the units of an ensemble row share one marker: one record per marker
    records = [read_json(m) for m in dict.fromkeys(u.marker for u in units if u.done())]
    starts = sorted(r["started"] for r in records if r.get("started"))
    ends = sorted(r["finished"] for r in records if r.get("finished"))
    atomic_write_json(
        out / "manifest.json",
        {
            "experiment": {
                "task": task,
                "backbone": backbone,
                "budget": budget,
                "dataset_dir": dataset_dir,
                "rows": [r[0] for r in rows],
                "seeds": list(seeds),
                "overrides": common,
            },
            "command": [sys.executable, "-m", "monai_meep.apps.experiments", *sys.argv[1:]],
            "written": utc_now(),
            "complete": complete,
            "runs_done": len(records),
            "runs_total": len({u.marker for u in units}),
            # total_wall_s: the runs' own wall times summed (one runner process: the table's wall time, whatever the
            # pauses between sittings); first_started / last_finished span the sittings too
            "total_wall_s": sum(r.get("wall_s", 0.0) for r in records),
            "first_started": starts[0] if starts else None,
            "last_finished": ends[-1] if ends else None,
            "env": env,
            "runs": records,
        },
    )
    files.append(str(out / "manifest.json"))
    return {"table": table, "complete": complete, "cells_done": n_done, "cells_total": len(cells), "files": files}


def export_results(out: str | Path, dest: str | Path) -> list[str]:
    """Copy the commit-ready outputs of ``out`` (markdown, CSV, PNG, manifest, per-subject CSVs) to ``dest``."""
    import shutil

    out, dest = Path(out), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in sorted([*out.glob("*.md"), *out.glob("*.csv"), *out.glob("*.png"), *out.glob("*.json")]):
        shutil.copy2(p, dest / p.name)
        copied.append(str(dest / p.name))
    if (out / "per_subject").is_dir():
        shutil.copytree(out / "per_subject", dest / "per_subject", dirs_exist_ok=True)
        copied.append(str(dest / "per_subject"))
    return copied
