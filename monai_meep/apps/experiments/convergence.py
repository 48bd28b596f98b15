# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Is a budget converged? ``python -m monai_meep.apps.experiments convergence --task la --budget cpu``.

The paper trains "until convergence". A budget passes here when **doubling the optimiser steps** changes the
**validation** DSC of the Dice and CE rows by less than a tolerance (0.01): each row is trained for twice the
budget's epochs, on the same data, split, schedule and seeds as the table, and validated at the budget's last epoch
and at twice it (the first half of that run is the budget's run: same seed, same schedule). The change is the mean
over seeds (default 3, as the table) of DSC(2x) - DSC(1x), so that it is not the noise of one run on a validation
split of a few subjects. Only the validation split is read, never the test split, so the check can choose a budget
without looking at the results it will report.

A budget that fits its learning-rate schedule to its length (it sets ``lr_step_epochs``, e.g. WMH's, which decays
to a few percent of the initial rate by its last epoch) is checked with the **whole schedule stretched**: the 2x run
doubles ``max_epochs`` and ``lr_step_epochs`` (the same decay over twice the steps), and the 1x run, the budget's
own, is trained beside it. Validating such a budget in the middle of a longer run would compare a model that is
still at a high rate with the end of the schedule, and continuing it past its end would train at a rate near zero,
a check that could hardly fail.

Outputs under ``--out``: ``convergence.md`` / ``convergence.json`` (per row and seed: validation DSC at 1x and 2x,
the change, pass / fail, wall times) and each run's bundle folder under ``runs/``. Resumable: finished runs are not
repeated; several processes may share ``--out`` with different ``--rows``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from monai_meep.apps.bundle.runner import add_set_argument, file_logging_conf, parse_set, run_bundle
from monai_meep.apps.experiments.manifest import (
    atomic_write_json,
    atomic_write_text,
    environment_info,
    read_json,
    utc_now,
)

__all__ = ["TOLERANCE", "add_parser", "run_convergence"]

TOLERANCE = 0.01  # the largest change of validation DSC a converged budget may show when its steps are doubled
ROWS = ("dice", "ce")  # the base rows the budget is chosen on (never the regularised ones)


def _validation_curve(log_dir: Path) -> dict[int, float]:
    """Validation DSC per epoch as the bundle's ``TensorBoardStatsHandler`` logged it (``val_mean_dice``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curve: dict[int, float] = {}
    for f in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if "val_mean_dice" in acc.Tags().get("scalars", []):
            curve.update({int(e.step): float(e.value) for e in acc.Scalars("val_mean_dice")})
    return curve


def _train(task: str, run_dir: Path, over: dict[str, Any], *at_epochs: int) -> tuple[tuple[float, ...], float]:
    """Train one bundle run (once: a ``done.json`` marker keeps its result); its validation DSC at ``at_epochs``.

    Returns:
        ``(dsc, train_s)``: the validation DSC at each of ``at_epochs``, in their order, and the training time.

    Raises:
        RuntimeError: the run logged no validation DSC at one of ``at_epochs``.
    """
    marker = run_dir / "done.json"
    record = read_json(marker)
    if record is None:
        over = {**over, "run_dir": str(run_dir)}
        run_dir.mkdir(parents=True, exist_ok=True)
        t = run_bundle(task, "train", over, logging_file=file_logging_conf(run_dir))
        curve = _validation_curve(run_dir / "logs")
        missing = [e for e in at_epochs if e not in curve]
        if missing:
            raise RuntimeError(f"{run_dir} logged no validation DSC at epoch(s) {missing} (found {curve}).")
        record = {
            "curve": {str(e): curve[e] for e in sorted(curve)},
            "train_s": t,
            "finished": utc_now(),
            "overrides": over,
        }
        atomic_write_json(marker, record)
    curve = {int(e): v for e, v in record["curve"].items()} if "curve" in record else _legacy_curve(record, at_epochs)
    return tuple(curve[e] for e in at_epochs), float(record.get("train_s", record.get("train_s_2x", 0.0)))


def _legacy_curve(record: dict[str, Any], at_epochs: tuple[int, ...]) -> dict[int, float]:
    """A marker written before ``curve`` was recorded: ``dsc_1x`` / ``dsc_2x`` at the budget's 1x and 2x epochs."""
    one, two = at_epochs
    return {one: float(record["dsc_1x"]), two: float(record["dsc_2x"])}


def run_convergence(
    task: str = "la",
    budget: str = "cpu",
    out: str | Path = "./runs/convergence",
    backbone: str = "unet",
    seeds: int = 3,
    extra: dict[str, Any] | None = None,
    tolerance: float = TOLERANCE,
    rows: tuple[str, ...] = ROWS,
) -> dict[str, Any]:
    """Train the Dice and CE rows for twice the budget's epochs; compare their validation DSC at 1x and 2x.

    Args:
        task: ``"la"`` or ``"wmh"``.
        budget: a :data:`monai_meep.apps.experiments.table1.BUDGETS` name.
        out: output folder (rerunning resumes).
        backbone: ``"unet"`` or ``"resunet"``.
        seeds: runs per row (bundle seeds ``0 .. seeds-1``, as the table's).
        extra: further bundle overrides for every run.
        tolerance: the largest accepted change of the mean validation DSC.
        rows: the rows to check (default Dice and CE); several processes may share one ``out`` with different rows,
            and a last call with all of them (nothing left to train) writes the complete report.

    Returns:
        ``{"rows": {row: {"dsc_1x", "dsc_2x", "change", "converged", "seeds": {seed: {...}}}}, "converged", ...}``.

    Raises:
        ValueError: unknown task, budget or row, or ``seeds < 1``.
        RuntimeError: a run logged no validation DSC at 1x or 2x.
    """
    from monai_meep.apps.experiments.table1 import BUDGETS, MODELS

    if task not in ("la", "wmh"):
        raise ValueError(f"unknown task {task!r}; valid values are la, wmh.")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; valid values are {', '.join(BUDGETS)}.")
    bad = [r for r in rows if r not in MODELS]
    if bad or not rows:
        raise ValueError(f"unknown row(s) {bad or rows}; valid rows are {', '.join(MODELS)}.")
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}.")
    out = Path(out).expanduser().absolute()
    base = {**BUDGETS[budget][task], "backbone": backbone, "num_workers": 0, "progress": False, **(extra or {})}
    epochs = int(base["max_epochs"])
    stretched = "lr_step_epochs" in base
    checked: dict[str, dict[str, Any]] = {}
    for row in rows:
        per_seed: dict[int, dict[str, Any]] = {}
        for seed in range(int(seeds)):
            common = {**base, **MODELS[row], "seed": seed}
            if stretched:
                one_x = out / "runs" / f"{row}_seed{seed}_1x"
                (dsc_1x,), _ = _train(task, one_x, {**common, "val_interval": epochs}, epochs)
                two_x = out / "runs" / f"{row}_seed{seed}_2x"
                stretch = {"max_epochs": 2 * epochs, "lr_step_epochs": 2 * int(base["lr_step_epochs"])}
                (dsc_2x,), t = _train(task, two_x, {**common, **stretch, "val_interval": epochs}, 2 * epochs)
            else:
                run_dir = out / "runs" / f"{row}_seed{seed}"
                over = {**common, "max_epochs": 2 * epochs, "val_interval": epochs}
                (dsc_1x, dsc_2x), t = _train(task, run_dir, over, epochs, 2 * epochs)
            per_seed[seed] = {"dsc_1x": dsc_1x, "dsc_2x": dsc_2x, "train_s_2x": t, "change": dsc_2x - dsc_1x}
        n = len(per_seed)
        one, two = (sum(r[k] for r in per_seed.values()) / n for k in ("dsc_1x", "dsc_2x"))
        checked[row] = {
            "dsc_1x": one,
            "dsc_2x": two,
            "change": two - one,
            "converged": abs(two - one) < tolerance,
            "epochs_1x": epochs,
            "epochs_2x": 2 * epochs,
            "seeds": per_seed,
        }
    result = {
        "task": task,
        "budget": budget,
        "backbone": backbone,
        "seeds": int(seeds),
        "tolerance": tolerance,
        "schedule": "stretched" if stretched else "continued",
        "overrides": base,
        "rows": checked,
        "converged": all(r["converged"] for r in checked.values()),
        "written": utc_now(),
        "env": environment_info(),
    }
    atomic_write_json(out / "convergence.json", result)
    lines = [
        f"# Convergence of budget {budget!r}: {task.upper()}, {backbone}",
        "",
        f"Validation DSC after the budget's {epochs} epochs (1x) and after {2 * epochs} (2x, "
        + (
            f"a second run with the whole schedule stretched: lr step every {2 * int(base['lr_step_epochs'])} "
            f"epochs instead of {base['lr_step_epochs']}"
            if stretched
            else "the same run and schedule continued"
        )
        + f"), mean over {seeds} seed(s); converged when the mean change is below {tolerance}.",
        "",
        "| row | val DSC 1x | val DSC 2x | change | converged | per seed (1x -> 2x) | train s (2x run) |",
        "|:---|---:|---:|---:|:---|:---|---:|",
    ]
    for row, r in checked.items():
        per = "; ".join(f"{v['dsc_1x']:.4f} -> {v['dsc_2x']:.4f}" for v in r["seeds"].values())
        wall = sum(v["train_s_2x"] for v in r["seeds"].values()) / len(r["seeds"])
        lines.append(
            f"| {row} | {r['dsc_1x']:.4f} | {r['dsc_2x']:.4f} | {r['change']:+.4f} | "
            f"{'yes' if r['converged'] else 'no'} | {per} | {wall:.0f} |"
        )
    shown = {k: v for k, v in base.items() if k not in ("progress", "num_workers")}
    lines += ["", f"Settings: `{json.dumps(shown)}`", ""]
    atomic_write_text(out / "convergence.md", "\n".join(lines))
    return result


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convergence`` on the ``python -m monai_meep.apps.experiments`` parser."""
    p = subparsers.add_parser(
        "convergence",
        help="does doubling a budget's steps change the validation DSC?",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--task", choices=("wmh", "la"), required=True)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--backbone", choices=("unet", "resunet"), default="unet")
    p.add_argument("--seeds", type=int, default=3, help="runs per row (default 3, as the table)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), help="rows to check (default: dice ce)")
    p.add_argument("--out", default="./runs/convergence/<task>_<backbone>_<budget>")
    add_set_argument(p)
    p.set_defaults(func=_main)
    return p


def _main(args: argparse.Namespace) -> int:
    out = args.out.replace("<task>", args.task).replace("<backbone>", args.backbone).replace("<budget>", args.budget)
    t0 = time.perf_counter()
    res = run_convergence(
        task=args.task,
        budget=args.budget,
        out=out,
        backbone=args.backbone,
        seeds=args.seeds,
        extra=parse_set(args.set, args.allow_expressions),
        rows=tuple(args.rows),
    )
    print((Path(out) / "convergence.md").read_text())
    print(f"[convergence] {'converged' if res['converged'] else 'NOT converged'} ({time.perf_counter() - t0:.0f} s)")
    return 0 if res["converged"] else 1
