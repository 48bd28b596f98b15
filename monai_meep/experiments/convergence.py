# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Is a budget converged? ``python -m monai_meep.experiments convergence --task la --budget cpu``.

The paper trains "until convergence". A budget passes here when **doubling the optimiser steps** changes the
**validation** DSC of the Dice and CE rows by less than a tolerance (0.01): each row is trained at the budget and at
twice its epochs with the learning-rate schedule stretched to match (``lr_step_epochs`` doubled too, so both runs
take the same number of decays and end at the same rate), on the same data, split and seed, through the bundle's
``train.json``; each run validates once, at its end. Only the validation split is read, never the test split, so the
check can choose a budget without looking at the results it will report.

Outputs under ``--out``: ``convergence.md`` / ``convergence.json`` (per row: validation DSC at 1x and 2x, the change,
pass / fail, wall times) and each run's bundle folder under ``runs/``. Resumable: finished runs are not repeated.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from monai_meep.experiments.bundle_runner import file_logging_conf, parse_set, run_bundle
from monai_meep.experiments.manifest import atomic_write_json, atomic_write_text, environment_info, read_json, utc_now

__all__ = ["TOLERANCE", "add_parser", "run_convergence"]

TOLERANCE = 0.01  # the largest change of validation DSC a converged budget may show when its steps are doubled
ROWS = ("dice", "ce")  # the base rows the budget is chosen on (never the regularised ones)


def _validation_dsc(task: str, over: dict[str, Any], run_dir: Path) -> float:
    """Mean DSC over the validation subjects of the trained model (the bundle's ``evaluate.json`` on that split)."""
    from monai_meep.experiments.bundle_runner import read_metrics

    eval_dir = run_dir / "eval" / "validation"
    run_bundle(
        task,
        "evaluate",
        {**over, "eval_split": "validation", "eval_dir": str(eval_dir), "save_maps": False},
        logging_file=file_logging_conf(run_dir),
    )
    values = read_metrics(eval_dir).get("val_mean_dice", {})
    if not values:
        raise RuntimeError(f"the evaluation of {run_dir} on the validation split wrote no DSC in {eval_dir}.")
    return sum(values.values()) / len(values)


def run_convergence(
    task: str = "la",
    budget: str = "cpu",
    out: str | Path = "./runs/convergence",
    backbone: str = "unet",
    seed: int = 0,
    extra: dict[str, Any] | None = None,
    tolerance: float = TOLERANCE,
    rows: tuple[str, ...] = ROWS,
) -> dict[str, Any]:
    """Train the Dice and CE rows at ``budget`` and at twice its steps; compare their validation DSC.

    Args:
        task: ``"la"`` or ``"wmh"``.
        budget: a :data:`monai_meep.experiments.table1.BUDGETS` name.
        out: output folder (rerunning resumes).
        backbone: ``"unet"`` or ``"resunet"``.
        seed: the bundle seed of every run.
        extra: further bundle overrides for every run.
        tolerance: the largest accepted change of validation DSC.
        rows: the rows to check (default Dice and CE); several processes may share one ``out`` with different rows,
            and a last call with all of them (nothing left to train) writes the complete report.

    Returns:
        ``{"rows": {row: {"dsc_1x", "dsc_2x", "change", "converged", "train_s_1x", "train_s_2x"}}, "converged"}``.

    Raises:
        ValueError: unknown task, budget or row.
    """
    from monai_meep.experiments.table1 import BUDGETS, MODELS

    if task not in ("la", "wmh"):
        raise ValueError(f"unknown task {task!r}; valid values are la, wmh.")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; valid values are {', '.join(BUDGETS)}.")
    bad = [r for r in rows if r not in MODELS]
    if bad or not rows:
        raise ValueError(f"unknown row(s) {bad or rows}; valid rows are {', '.join(MODELS)}.")
    out = Path(out).expanduser().absolute()
    base = {
        "lr_step_epochs": 10,
        **BUDGETS[budget][task],
        "backbone": backbone,
        "seed": int(seed),
        "num_workers": 0,
        "progress": False,
        **(extra or {}),
    }
    checked: dict[str, dict[str, Any]] = {}
    for row in rows:
        checked[row] = {}
        for factor in (1, 2):
            run_dir = out / "runs" / f"{row}_{factor}x"
            epochs = int(base["max_epochs"]) * factor
            over = {
                **base,
                **MODELS[row],
                "max_epochs": epochs,
                "lr_step_epochs": int(base["lr_step_epochs"]) * factor,
                "val_interval": epochs,
                "run_dir": str(run_dir),
            }
            marker = run_dir / "done.json"
            record = read_json(marker)
            if record is None:
                run_dir.mkdir(parents=True, exist_ok=True)
                t = run_bundle(task, "train", over, logging_file=file_logging_conf(run_dir))
                record = {
                    "dsc": _validation_dsc(task, over, run_dir),
                    "train_s": t,
                    "finished": utc_now(),
                    "overrides": over,
                }
                atomic_write_json(marker, record)
            checked[row][f"dsc_{factor}x"] = record["dsc"]
            checked[row][f"train_s_{factor}x"] = record["train_s"]
            checked[row][f"epochs_{factor}x"] = epochs
        checked[row]["change"] = checked[row]["dsc_2x"] - checked[row]["dsc_1x"]
        checked[row]["converged"] = abs(checked[row]["change"]) < tolerance
    result = {
        "task": task,
        "budget": budget,
        "backbone": backbone,
        "seed": seed,
        "tolerance": tolerance,
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
        "Validation DSC after the budget's optimiser steps (1x) and after twice as many (2x, the learning-rate "
        f"schedule stretched to match); converged when the change is below {tolerance}.",
        "",
        "| row | epochs 1x / 2x | val DSC 1x | val DSC 2x | change | converged | train s 1x / 2x |",
        "|:---|:---|---:|---:|---:|:---|:---|",
    ]
    for row, r in checked.items():
        lines.append(
            f"| {row} | {r['epochs_1x']} / {r['epochs_2x']} | {r['dsc_1x']:.4f} | {r['dsc_2x']:.4f} | "
            f"{r['change']:+.4f} | {'yes' if r['converged'] else 'no'} | "
            f"{r['train_s_1x']:.0f} / {r['train_s_2x']:.0f} |"
        )
    lines += [
        "",
        f"Settings: `{json.dumps({k: v for k, v in base.items() if k not in ('progress', 'num_workers')})}`",
        "",
    ]
    atomic_write_text(out / "convergence.md", "\n".join(lines))
    return result


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convergence`` on the ``python -m monai_meep.experiments`` parser."""
    p = subparsers.add_parser(
        "convergence",
        help="does doubling a budget's steps change the validation DSC?",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--task", choices=("wmh", "la"), required=True)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--backbone", choices=("unet", "resunet"), default="unet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", nargs="+", default=list(ROWS), help="rows to check (default: dice ce)")
    p.add_argument("--out", default="./runs/convergence/<task>_<backbone>_<budget>")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra bundle override for every run, VALUE parsed as JSON when possible (repeatable)",
    )
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
        seed=args.seed,
        extra=parse_set(args.set),
        rows=tuple(args.rows),
    )
    print((Path(out) / "convergence.md").read_text())
    print(f"[convergence] {'converged' if res['converged'] else 'NOT converged'} ({time.perf_counter() - t0:.0f} s)")
    return 0 if res["converged"] else 1
