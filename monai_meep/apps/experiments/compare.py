# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The main job: train a Dice baseline and Dice + MEEP (KL, paper lambda) through the bundle, evaluate both on the
test split, and report them side by side.

``python -m monai_meep.apps.experiments compare [--task la|wmh] [--out DIR] [--budget quick|default]`` runs on a fresh
machine with no data and no GPU: the phantom is generated once (cache folder), both models are trained with the
bundle's ``train.json`` (same seed, same data) and evaluated with ``evaluate.json``. Outputs under ``--out``:
``compare.md`` / ``compare.csv`` (mean (std) over test subjects), ``reliability.png`` (both models on one figure),
``probability_histogram.png``, ``timings.json``, and per model its checkpoints, TensorBoard logs, per-subject CSVs
and bundle log. A rerun resumes: finished trainings are not repeated (the bundle resumes from its last checkpoint).
Whatever it measures is reported as is.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from monai_meep.apps.bundle.runner import (
    add_set_argument,
    bundle_dir,
    file_logging_conf,
    parse_set,
    read_calibration_state,
    read_metrics,
    run_bundle,
)
from monai_meep.apps.experiments.manifest import atomic_write_text
from monai_meep.utils import atomic_open

__all__ = ["BUDGETS", "COLUMNS", "add_parser", "format_table", "run_compare", "summarise"]

# Small CPU settings (the paper's settings are the bundle defaults). "default" aims at ~4-6 minutes on 2 CPU cores;
# "quick" is the CI smoke run. The model is the bundle's UNet with fewer channels / levels.
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "la": {"num_subjects": 8, "scale": 0.2, "max_epochs": 2, "channels": [8, 16, 32], "strides": [2, 2]},
        "wmh": {
            "num_subjects": 6,
            "scale": 0.25,
            "max_epochs": 2,
            "channels": [8, 16, 32],
            "strides": [2, 2],
            "batch_size": 4,
            "samples_per_volume": 2,
        },
    },
    "default": {
        "la": {
            "num_subjects": 24,
            "scale": 0.3,
            "max_epochs": 30,
            "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2],
            "learning_rate": 1e-3,
        },
        "wmh": {
            "num_subjects": 12,
            "scale": 0.4,
            "max_epochs": 20,
            "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2],
            "batch_size": 8,
            "samples_per_volume": 4,
            "learning_rate": 1e-3,
        },
    },
}

# (metric file name, column header, scale factor, decimals); headers follow the paper's units
COLUMNS: list[tuple[str, str, float, int]] = [
    ("test_mean_dice", "DSC", 1.0, 3),
    ("test_hd95_mm", "HD95 (mm)", 1.0, 2),
    ("test_hd_mm", "HD (mm)", 1.0, 2),
    ("test_brier", "Brier (x1e-4)", 1e4, 2),
    ("test_brier_plus", "Brier+", 1.0, 3),
    ("test_ece", "ECE (x1e-3)", 1e3, 2),
]

MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("Dice", "dice", {"base_loss": "dice", "regularizer": "none"}),
    ("Dice + MEEP (KL)", "dice_meep_kl", {"base_loss": "dice", "regularizer": "meep_kl"}),
]


def summarise(values: dict[str, float], scale: float = 1.0) -> tuple[float, float, int]:
    """Mean and sample standard deviation (``statistics.stdev``, ddof 1) over subjects.

    ddof 1 as everywhere in the application: Table 1's mean (std) of 3 models (``table_format``) and the paper's
    tables. One subject gives a NaN std. Non-finite values (e.g. an infinite Hausdorff distance for an empty
    prediction, as in MONAI) propagate: the mean is then inf / NaN and is reported as such, never dropped silently.
    Returns ``(mean, std, n)``.
    """
    v = [x * scale for x in values.values()]
    if not v:
        return math.nan, math.nan, 0
    if not all(math.isfinite(x) for x in v):
        return sum(v) / len(v), math.nan, len(v)
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else math.nan, len(v)


def format_table(rows: dict[str, dict[str, tuple[float, float, int]]], markdown: bool = True) -> str:
    """``rows``: model -> column header -> (mean, std, n); a markdown (or plain aligned) table of ``mean (std)``."""
    headers = ["Model"] + [c[1] for c in COLUMNS]
    digits = {c[1]: c[3] for c in COLUMNS}
    body = []
    for model, cols in rows.items():
        cells = [model]
        for h in headers[1:]:
            m, s, _ = cols[h]
            cells.append(f"{m:.{digits[h]}f} ({s:.{digits[h]}f})")
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [headers, *body])


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) if r[key] not in ("", "nan") else math.nan for r in rows]


def paired_rows(per_subject: dict[str, dict[str, dict[str, float]]], model: str, reference: str) -> dict[str, Any]:
    """Paired difference ``model`` minus ``reference`` per column over their common test subjects (one seed).

    ``per_subject``: model -> metric file stem -> subject -> value (as :func:`read_metrics` returns). Returns
    column header -> :class:`monai_meep.report.stats.PairedDifference`, in the column's unit.
    """
    import numpy as np

    from monai_meep.apps.experiments.stats import METRICS
    from monai_meep.report.stats import paired_difference

    out = {}
    for key, header, scale, _ in COLUMNS:
        a, b = per_subject[model].get(key, {}), per_subject[reference].get(key, {})
        subjects = sorted(set(a) & set(b))
        if not subjects:
            continue
        row = np.array([[a[s] * scale for s in subjects]])
        ref = np.array([[b[s] * scale for s in subjects]])
        out[header] = paired_difference(row, ref, higher_is_better=METRICS[header])  # same headers as Table 1
    return out


def format_paired(diffs: dict[str, Any], model: str, reference: str) -> str:
    """The paired differences as aligned text lines, with the verdict of each interval."""
    n = max((d.n_pairs for d in diffs.values()), default=0)
    lines = [
        f"Paired difference, {model} minus {reference}, over the {n} test subjects (95 % bootstrap interval, "
        "Wilcoxon p):"
    ]
    width = max((len(h) for h in diffs), default=0)
    for header, d in diffs.items():
        digits = next(c[3] for c in COLUMNS if c[1] == header)
        lines.append(
            f"  {header.ljust(width)}  {d.mean_difference:+.{digits}f} [{d.ci_low:+.{digits}f}, "
            f"{d.ci_high:+.{digits}f}]  p={d.wilcoxon_p:.2g}  {d.verdict}"
        )
    if 0 < n < 10:  # a percentile bootstrap over so few subjects understates the spread; the rank test shows it
        lines.append(
            f"  ({n} subjects only: the smallest possible two-sided Wilcoxon p is {2.0 ** (1 - n):.3g}, and a "
            "bootstrap interval over so few subjects is too narrow to trust.)"
        )
    return "\n".join(lines)


def _plot(out: Path, runs: dict[str, Path]) -> list[str]:
    """Both models' reliability diagrams on one figure, and their probability histograms: from each evaluation's exact
    ``calibration_state.pt`` when it has one, else from its bin table (``reliability.csv``, older folders)."""
    from monai_meep.metrics import calibration_error_from_histogram, reliability_curve_from_histogram
    from monai_meep.visualize import plot_probability_histogram, plot_reliability_diagram

    curves, eces = {}, {}
    for name, eval_dir in runs.items():
        hist = read_calibration_state(eval_dir)
        if hist is not None:
            curves[name] = reliability_curve_from_histogram(hist, 10, include_background=True).row(1)
            eces[name] = float(calibration_error_from_histogram(hist, 15, include_background=True)[1])
            continue
        with open(eval_dir / "reliability.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["class"] == "1"]
        last = max(int(r["epoch"]) for r in rows)
        rows = sorted((r for r in rows if int(r["epoch"]) == last), key=lambda r: int(r["bin"]))
        curves[name] = {
            "confidence": _column(rows, "confidence"),
            "frequency": _column(rows, "frequency"),
            "count": [int(float(r["count"])) for r in rows],
            "bin_lower": _column(rows, "lower"),
            "bin_upper": _column(rows, "upper"),
        }
        eces[name] = float(rows[0]["ece"])
    title = "Test split, foreground; ECE on 15 bins (pooled over subjects)"
    rel = plot_reliability_diagram(curves, ece=eces, title=title, save_path=out / "reliability.png")
    hist = plot_probability_histogram(
        curves, title="Predicted foreground probabilities", save_path=out / "probability_histogram.png"
    )
    import matplotlib.pyplot as plt

    plt.close(rel)
    plt.close(hist)
    return [str(out / "reliability.png"), str(out / "probability_histogram.png")]


def run_compare(
    task: str = "la",
    out: str | os.PathLike = "./runs/compare",
    budget: str = "default",
    dataset_dir: str = "",
    extra: dict[str, Any] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train and evaluate both models through the ``task`` bundle; write the table and figures under ``out``.

    Args:
        task: ``"la"`` or ``"wmh"``.
        out: output folder.
        budget: ``"quick"`` (CI smoke run) or ``"default"`` (a few minutes on 2 CPU cores).
        dataset_dir: a real data set (empty: the phantom).
        extra: further bundle overrides applied to both models (e.g. ``{"max_epochs": 5}``).
        verbose: print progress and the table.

    Returns:
        ``{"table": rows, "markdown": str, "files": [...], "timings": {...}}``.

    Raises:
        ValueError: unknown task or budget (and any bad input the bundle reports before training).
    """
    if task not in ("la", "wmh"):
        raise ValueError(f"unknown task {task!r}; valid values are la, wmh.")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; valid values are {', '.join(BUDGETS)}.")
    out = Path(out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    settings = {**BUDGETS[budget][task], "dataset_dir": dataset_dir, "num_workers": 0, "progress": False}
    settings["val_interval"] = settings["max_epochs"]  # validate once, at the end: model.pt is the final model
    settings.update(extra or {})
    say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    rows: dict[str, dict[str, tuple[float, float, int]]] = {}
    eval_dirs: dict[str, Path] = {}
    per_subject: dict[str, dict[str, dict[str, float]]] = {}
    say(f"[compare] task={task} budget={budget} out={out} bundle={bundle_dir(task)}")
    for name, slug, loss in MODELS:
        run_dir = out / slug
        run_dir.mkdir(parents=True, exist_ok=True)
        log_conf = file_logging_conf(run_dir)
        common = {**settings, **loss, "run_dir": str(run_dir)}
        say(f"[compare] {name}: training ({settings['max_epochs']} epochs; log: {run_dir / 'bundle.log'})", flush=True)
        timings[f"{slug}_train_s"] = run_bundle(task, "train", common, logging_file=log_conf)
        say(f"[compare] {name}: evaluating on the test split", flush=True)
        timings[f"{slug}_evaluate_s"] = run_bundle(
            task, "evaluate", {**common, "save_maps": False}, logging_file=log_conf
        )
        eval_dirs[name] = run_dir / "eval" / "test"
        metrics = read_metrics(eval_dirs[name])
        missing = [c[0] for c in COLUMNS if c[0] not in metrics]
        if missing:
            raise RuntimeError(f"evaluation of {name} wrote no per-subject values for {missing} in {eval_dirs[name]}.")
        rows[name] = {h: summarise(metrics[k], s) for k, h, s, _ in COLUMNS}
        per_subject[name] = metrics
        say(f"[compare] {name}: done in {timings[f'{slug}_train_s'] + timings[f'{slug}_evaluate_s']:.0f} s", flush=True)
    files = _plot(out, eval_dirs)
    md = format_table(rows, markdown=True)
    n = next(iter(rows.values()))["DSC"][2]
    note = (
        f"\n\nTask {task.upper()} ({'phantom' if not dataset_dir else dataset_dir}), budget {budget}: mean (std) over "
        f"{n} test subjects. MEEP weight: the paper's lambda for {task.upper()} + Dice. Settings: "
        f"{json.dumps({k: v for k, v in settings.items() if k not in ('progress', 'num_workers')})}.\n"
    )
    (model, _, _), (reference, _, _) = MODELS[1], MODELS[0]
    diffs = paired_rows(per_subject, model, reference)
    paired = format_paired(diffs, model, reference)
    caveat = (
        "One seed on a phantom at a small budget is a demonstration, not evidence: the full tables (13 rows x 3 "
        "seeds, paired statistics) are in results/ and docs/results.md."
    )
    atomic_write_text(out / "compare.md", md + note + "\n```\n" + paired + "\n```\n\n" + caveat + "\n")
    with atomic_open(out / "compare.csv", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "metric", "mean", "std", "n"])
        for model, cols in rows.items():
            for h, (m, s, k) in cols.items():
                w.writerow([model, h, m, s, k])
    timings["total_s"] = time.perf_counter() - t0
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=2))
    files += [str(out / "compare.md"), str(out / "compare.csv"), str(out / "timings.json")]
    say("\n" + format_table(rows, markdown=False))
    say(f"\n(mean (std) over {n} test subjects; total {timings['total_s']:.0f} s) -> {out}")
    say("\n" + paired + "\n" + caveat)
    return {"table": rows, "markdown": md, "files": files, "timings": timings, "paired": diffs}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``compare`` on the ``python -m monai_meep.apps.experiments`` parser."""
    p = subparsers.add_parser(
        "compare",
        help="Dice vs Dice + MEEP on the built-in phantom (train, evaluate, side-by-side table)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--task", choices=("la", "wmh"), default="la", help="which bundle / phantom (default: la)")
    p.add_argument("--out", default="./runs/compare", help="output folder (default: ./runs/compare)")
    p.add_argument("--budget", choices=tuple(BUDGETS), default="default", help="quick (CI) or default (~5 min CPU)")
    p.add_argument("--dataset-dir", default="", help="a real data set in a supported layout (default: the phantom)")
    add_set_argument(p, "both models")
    p.set_defaults(func=_main)
    return p


def _main(args: argparse.Namespace) -> int:
    extra = parse_set(args.set, args.allow_expressions)
    run_compare(task=args.task, out=args.out, budget=args.budget, dataset_dir=args.dataset_dir, extra=extra)
    return 0
