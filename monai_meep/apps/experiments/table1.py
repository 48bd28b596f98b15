# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The paper's Table 1, regenerated through the bundles: ``python -m monai_meep.apps.experiments table1 --task la``.

Every row's models are trained per seed with the task bundle's ``train.json`` and scored on the test split with
``evaluate.json`` (one place defines the pipeline). The post-hoc rows (+PS Platt scaling, +IR isotonic regression)
reuse the vanilla Dice / CE model of the same seed: ``calibrate.json`` fits the calibrator on the validation split
with the network frozen, then ``evaluate.json`` applies it. Outputs under ``--out``: ``table1.md`` / ``table1.csv``
(paper layout; aggregation in :mod:`table_format`), ``per_subject/<row>.csv``, ``reliability.png``,
``probability_histogram.png`` and ``manifest.json``; per run, the bundle's checkpoints, logs and CSVs under
``runs/<model>/seed<k>/``.

Resumable and parallel-safe: each unit of work (train + evaluate one model, or fit + evaluate one calibrator) holds
an exclusive lock while it runs and is done when its marker file (written atomically, last) exists; finished units
are skipped, an interrupted training resumes from the bundle's last checkpoint, and several processes may share one
``--out``. ``--time-limit`` stops before a unit that would not finish in time (estimated from the finished ones);
the exit code is then 75 and rerunning the same command continues.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from monai_meep.apps.bundle.runner import (
    add_set_argument,
    file_logging_conf,
    parse_set,
    read_metrics,
    run_bundle,
)
from monai_meep.apps.experiments.manifest import RunLock, atomic_write_json, environment_info, read_json, utc_now
from monai_meep.apps.experiments.table_format import export_results, write_outputs

__all__ = [
    "ALL_ROWS",
    "BUDGETS",
    "EXTENDED_ROWS",
    "MODELS",
    "ROWS",
    "ROW_GROUPS",
    "EXIT_STOPPED",
    "add_parser",
    "export_results",
    "resolve_rows",
    "run_table1",
]

EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped by --time-limit, rerun to continue

MC_DROPOUT_RATE = 0.1  # the MC-dropout network's dropout rate (Gal & Ghahramani's common choice; not tuned here)
# the evaluation-time uncertainty baselines: a row's "method" that evaluates its model(s) through the bundle's
# --uncertainty option (monai_meep.apps.bundle.uncertainty) instead of fitting a calibrator
UNCERTAINTY_METHODS = ("ensemble", "mc_dropout", "tta")
MC_SAMPLES = 10  # MC-dropout passes (issue 16's default)

# trained models: slug -> bundle loss overrides (lambda / beta: the paper's defaults of build_loss)
MODELS: dict[str, dict[str, str]] = {
    "dice": {"base_loss": "dice", "regularizer": "none"},
    "dice_hy": {"base_loss": "dice", "regularizer": "confidence_penalty"},
    "dice_hyw": {"base_loss": "dice", "regularizer": "meep_entropy"},
    "dice_klyw": {"base_loss": "dice", "regularizer": "meep_kl"},
    "ce": {"base_loss": "ce", "regularizer": "none"},
    "ce_hy": {"base_loss": "ce", "regularizer": "confidence_penalty"},
    "ce_hyw": {"base_loss": "ce", "regularizer": "meep_entropy"},
    "ce_klyw": {"base_loss": "ce", "regularizer": "meep_kl"},
    "fl": {"base_loss": "focal", "regularizer": "none"},
    # the field's train-time calibration baselines (docs/baselines.md), the paper's rows' bundle with another loss
    "ls": {"base_loss": "ls", "regularizer": "none"},
    "ls_dice": {"base_loss": "ls_dice", "regularizer": "none"},
    "svls": {"base_loss": "svls", "regularizer": "none"},
    "mbls": {"base_loss": "mbls", "regularizer": "none"},
    "nacl": {"base_loss": "nacl", "regularizer": "none"},
    "ml1ace": {"base_loss": "ml1ace", "regularizer": "none"},
    "flsd": {"base_loss": "flsd", "regularizer": "none"},
    # the MC-dropout row's network: the Dice row's with dropout in every block (scored deterministically too)
    "dice_dropout": {"base_loss": "dice", "regularizer": "none", "dropout": MC_DROPOUT_RATE},
}

# table rows in the paper's order: (name, slug, model slug, post-hoc calibrator or None)
ROWS: list[tuple[str, str, str, str | None]] = [
    ("Dice", "dice", "dice", None),
    ("Dice+PS", "dice_ps", "dice", "platt"),
    ("Dice+IR", "dice_ir", "dice", "isotonic"),
    ("Dice+H(Y)", "dice_hy", "dice_hy", None),
    ("Dice+H(Y_w)", "dice_hyw", "dice_hyw", None),
    ("Dice+KL(Y_w)", "dice_klyw", "dice_klyw", None),
    ("CE", "ce", "ce", None),
    ("CE+PS", "ce_ps", "ce", "platt"),
    ("CE+IR", "ce_ir", "ce", "isotonic"),
    ("CE+H(Y)", "ce_hy", "ce_hy", None),
    ("CE+H(Y_w)", "ce_hyw", "ce_hyw", None),
    ("CE+KL(Y_w)", "ce_klyw", "ce_klyw", None),
    ("FL", "fl", "fl", None),
]

# the extended table's further rows (issue 16; ``--rows extended``): the field's calibration losses, each trained as a
# row of its own; docs/baselines.md gives their formulas and the base row each is compared with (stats.COMPARISONS)
EXTENDED_ROWS: list[tuple[str, str, str, str | None]] = [
    ("CE+LS", "ls", "ls", None),
    ("Dice+LS", "ls_dice", "ls_dice", None),
    ("SVLS", "svls", "svls", None),
    ("MbLS", "mbls", "mbls", None),
    ("NACL", "nacl", "nacl", None),
    ("Dice+CE+mL1-ACE", "ml1ace", "ml1ace", None),
    ("FLSD-53", "flsd", "flsd", None),
    ("Dice+Dropout", "dice_dropout", "dice_dropout", None),
    ("Dice+MC dropout", "dice_mcd", "dice_dropout", "mc_dropout"),
    ("Dice+TTA", "dice_tta", "dice", "tta"),
    # one deep ensemble of the row's seeds' models; its values stand in every seed's column (docs/baselines.md)
    ("Ensemble(Dice)", "ens_dice", "dice", "ensemble"),
    ("Ensemble(Dice+KL(Y_w))", "ens_dice_klyw", "dice_klyw", "ensemble"),
]
ALL_ROWS = ROWS + EXTENDED_ROWS
# row groups accepted by --rows beside single rows
ROW_GROUPS: dict[str, list[tuple[str, str, str, str | None]]] = {"paper": ROWS, "extended": ALL_ROWS}


def _compare_budgets() -> dict[str, dict[str, dict[str, Any]]]:
    from monai_meep.apps.experiments.compare import BUDGETS as compare_budgets

    return compare_budgets


# Budget -> task -> bundle overrides. "quick" is the main job's smoke setting (shared with compare); "cpu" trains the
# bundles' UNet to convergence on 2 CPU cores with the paper's splits (chosen on the validation split of the Dice and
# CE rows only: docs/reproducing.md); "full" is the bundle's own defaults, the paper's setting (GPU).
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": _compare_budgets()["quick"],
    "cpu": {
        # 100 subjects (76 train / 4 validation / 20 test) on a 0.3x grid (2.08 mm voxels, 48 x 48 x 32 crops),
        # 20 epochs of 38 steps; doubling to 40 changes the mean validation DSC of 3 seeds by +0.006 (Dice), +0.002 (CE)
        "la": {
            "num_subjects": 100,
            "scale": 0.3,
            "max_epochs": 20,
            "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2],
            "learning_rate": 1e-3,
        },
        # 60 subjects (42 train / 3 validation / 15 test, every site in each) on a 0.5x grid (2 x 2 x 6 mm voxels,
        # 32^3 patches), 80 epochs of 42 steps of 8 patches; the paper's schedule (lr x 0.85 every 10 epochs).
        # Doubling to 160 changes the mean validation DSC of 3 seeds by less than 0.01 (Dice and CE); 40 epochs were
        # not converged (+0.07 / +0.035). The table takes about 2.5 h on 2 cores, not the hour once aimed at
        # (docs/reproducing.md)
        "wmh": {
            "num_subjects": 60,
            "scale": 0.5,
            "max_epochs": 80,
            "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2],
            "learning_rate": 1e-3,
            "batch_size": 8,
            "samples_per_volume": 8,
        },
    },
    "full": {"la": {}, "wmh": {}},
}
# first-unit time estimates (s) before any unit has finished: (train + evaluate, calibrate + evaluate)
_DEFAULT_ESTIMATE = {"quick": (0.0, 0.0), "cpu": (0.0, 0.0), "full": (0.0, 0.0)}
PHANTOM_ONLY = ("num_subjects", "scale")  # phantom-size overrides, dropped for a real data set


def resolve_rows(rows: Sequence[str] | None) -> list[tuple[str, str, str, str | None]]:
    """Rows by name (``"Dice+KL(Y_w)"``) or slug (``"dice_klyw"``), case-insensitive, or a group (``"paper"``: the
    paper's 13 rows, ``"extended"``: those and :data:`EXTENDED_ROWS`), in the tables' order.

    Raises:
        ValueError: an unknown row (the message lists the valid ones).
    """
    if not rows:
        return list(ROWS)
    wanted = [r.strip().lower() for part in rows for r in part.split(",") if r.strip()]
    known = {k: row for row in ALL_ROWS for k in (row[0].lower(), row[1])}
    bad = [r for r in wanted if r not in known and r not in ROW_GROUPS]
    if bad:
        raise ValueError(
            f"unknown row(s) {bad}; valid rows: {', '.join(r[0] for r in ALL_ROWS)} (or slugs "
            f"{', '.join(r[1] for r in ALL_ROWS)}), or the groups {', '.join(ROW_GROUPS)}."
        )
    chosen = {row[1] for r in wanted for row in (ROW_GROUPS[r] if r in ROW_GROUPS else [known[r]])}
    return [r for r in ALL_ROWS if r[1] in chosen]


@dataclass
class Unit:
    """One unit of work: ``kind`` "train" (train + evaluate ``model``), "posthoc" (fit + evaluate a calibrator
    ``method``) or "uncertainty" (evaluate through an uncertainty ``method``: ensemble, MC dropout, TTA).

    The units of an ensemble row share one ``run_dir`` (so one marker): the first that runs fills every seed's cell.
    """

    kind: str
    model: str
    seed: int
    run_dir: Path
    method: str | None = None
    row: str | None = None  # table row this unit fills (None: a dependency only)
    depends: tuple[Unit, ...] = field(default=(), repr=False)  # the train units whose models it needs

    @property
    def tag(self) -> str:
        return "train" if self.method is None else self.method

    @property
    def marker(self) -> Path:
        return self.run_dir / f"done_{self.tag}.json"

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval" / ("test" if self.method is None else f"test_{self.method}")

    def done(self) -> bool:
        return self.marker.is_file()


def _run_unit(task: str, unit: Unit, common: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """Run one unit through the bundle and write its marker (atomically, last); return the run record."""
    unit.run_dir.mkdir(parents=True, exist_ok=True)
    log_conf = file_logging_conf(unit.run_dir)
    over = {**common, **MODELS[unit.model], "run_dir": str(unit.run_dir), "seed": unit.seed}
    ev = {**over, "save_maps": False, "eval_dir": str(unit.eval_dir)}
    started, t0, stages = utc_now(), time.perf_counter(), {}
    if unit.kind == "uncertainty":
        ev = {**ev, "uncertainty": unit.method, "mc_samples": MC_SAMPLES}
        if unit.method == "ensemble":  # evaluated from the first member's run folder, the others' weights added
            first = unit.depends[0]
            ev.update(
                run_dir=str(first.run_dir),
                seed=first.seed,
                ensemble_ckpts=[str(d.run_dir / "models" / "model.pt") for d in unit.depends],
            )
        stages["evaluate_s"] = run_bundle(task, "evaluate", ev, logging_file=log_conf)
    elif unit.method is None:
        trained = unit.run_dir / "trained.json"
        if not trained.is_file():  # else a previous call trained it and stopped before the evaluation finished
            stages["train_s"] = run_bundle(task, "train", over, logging_file=log_conf)
            atomic_write_json(trained, {"finished": utc_now(), "train_s": stages["train_s"]})
        stages["evaluate_s"] = run_bundle(task, "evaluate", ev, logging_file=log_conf)
    else:
        stages["calibrate_s"] = run_bundle(
            task, "calibrate", {**over, "calibration_method": unit.method}, logging_file=log_conf
        )
        stages["evaluate_s"] = run_bundle(task, "evaluate", {**ev, "calibrator": unit.method}, logging_file=log_conf)
    found = read_metrics(unit.eval_dir)  # test_* (or, written by an earlier version, val_*) per-subject files
    missing = [f"{m}_raw.csv" for m in ("test_mean_dice", "test_ece") if m not in found]
    if missing:
        raise RuntimeError(
            f"evaluation of {unit.model} seed {unit.seed} wrote no {missing} in {unit.eval_dir}; "
            f"see {unit.run_dir / 'bundle.log'}."
        )
    record = {
        "kind": unit.kind,
        "model": unit.model,
        "method": unit.method,
        "row": unit.row,
        "seed": unit.seed,
        "run_dir": str(unit.run_dir),
        "eval_dir": str(unit.eval_dir),
        "overrides": ev if unit.kind == "uncertainty" else over,
        "stages_s": stages,
        "wall_s": time.perf_counter() - t0,
        "started": started,
        "finished": utc_now(),
        "device": env["device"],
        "versions": env["versions"],
        "git": env["git"],
        "host": env["host"],
    }
    atomic_write_json(unit.marker, record)
    return record


def _plan(rows: Sequence[tuple[str, str, str, str | None]], seeds: Sequence[int], runs: Path) -> list[Unit]:
    """Units in execution order: seed by seed (a partial run fills whole seeds first), each post-hoc unit right after
    the model it calibrates; the ensemble rows last, once every seed's models exist."""
    units: list[Unit] = []
    trains: dict[tuple[str, int], Unit] = {}
    for seed in seeds:
        for name, _, model, method in rows:
            if (model, seed) not in trains:
                trains[model, seed] = Unit("train", model, seed, runs / model / f"seed{seed}")
                units.append(trains[model, seed])
            train = trains[model, seed]
            if method is None:
                train.row = name
            elif method == "ensemble":  # one unit per row, planned below once every seed is trained
                continue
            else:
                kind = "uncertainty" if method in UNCERTAINTY_METHODS else "posthoc"
                units.append(Unit(kind, model, seed, train.run_dir, method, name, (train,)))
    for name, _, model, method in rows:
        if method == "ensemble":
            members = tuple(trains[model, s] for s in seeds)
            units += [Unit("uncertainty", model, s, runs / model / "ensemble", method, name, members) for s in seeds]
    return units


def _estimate(units: Sequence[Unit], kind: str, budget: str) -> float:
    """Median wall time of the finished units of ``kind`` (from their markers), else the budget's default."""
    times = [r["wall_s"] for u in units if u.kind == kind and (r := read_json(u.marker)) and "wall_s" in r]
    return statistics.median(times) if times else _DEFAULT_ESTIMATE[budget][kind != "train"]


def _invalidate(unit: Unit) -> bool:
    """Remove ``unit``'s markers (under its lock) so it runs again; ``False`` if another process holds it."""
    lock = RunLock(unit.run_dir / f".lock_{unit.tag}")
    if not lock.acquire():
        return False
    try:
        for p in (unit.marker, unit.run_dir / "trained.json"):
            p.unlink(missing_ok=True)
    finally:
        lock.release()
    return True


#: seconds a runner waits for another one's settings check on the same ``--out`` (it takes milliseconds).
EXPERIMENT_LOCK_TIMEOUT_S = 60.0


def _check_experiment(out: Path, spec: dict[str, Any]) -> None:
    """Record the experiment's settings in ``out``; refuse an ``out`` that holds a different experiment.

    The read and the write happen under one inter-process lock (``out/.lock_experiment``, the same ``flock`` kind
    as the units' locks): without it two runners started together with different settings both read "no
    experiment.json", both wrote theirs and both ran, so the manifest could name settings a unit was not trained with.

    Raises:
        ValueError: ``out`` holds another experiment.
        TimeoutError: another runner held the lock for ``EXPERIMENT_LOCK_TIMEOUT_S`` seconds.
    """
    path = out / "experiment.json"
    lock = FileLock(str(out / ".lock_experiment"), timeout=EXPERIMENT_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout as e:
        raise TimeoutError(f"another runner on {out} held {lock.lock_file} for {EXPERIMENT_LOCK_TIMEOUT_S:g} s.") from e
    try:
        old = read_json(path)
        if old is None:
            atomic_write_json(path, spec)
        elif old != json.loads(json.dumps(spec, default=str)):
            diff = {k: (old.get(k), spec.get(k)) for k in set(old) | set(spec) if old.get(k) != spec.get(k)}
            raise ValueError(
                f"{out} holds another experiment (setting: (there, requested) = {diff}); use another --out."
            )
    finally:
        lock.release()


def run_table1(
    task: str = "la",
    out: str | Path = "./runs/table1",
    rows: Sequence[str] | None = None,
    seeds: int = 3,
    backbone: str = "unet",
    budget: str = "quick",
    dataset_dir: str = "",
    time_limit: float | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
    poll_s: float = 5.0,
    figures: bool = True,
) -> dict[str, Any]:
    """Train / calibrate / evaluate every (row, seed) through the ``task`` bundle and write Table 1 under ``out``.

    Args:
        task: ``"wmh"`` or ``"la"``.
        out: output folder (created); rerunning with the same folder resumes.
        rows: row names, slugs or groups (:func:`resolve_rows`; default: the 13 rows of the paper).
        seeds: number of models per row (seeds ``0 .. seeds-1`` of the bundle's ``seed``; the data split is fixed).
        backbone: ``"unet"`` or ``"resunet"``.
        budget: ``"quick"`` (CPU smoke run), ``"cpu"`` (2-core CPU), ``"full"`` (the paper's setting, GPU).
        dataset_dir: a real data set in a supported layout; empty: the built-in phantom.
        time_limit: minutes; no unit is started that the estimate says would end after it.
        extra: further bundle overrides for every run (e.g. ``{"split": "loso", "held_out_site": "GE3T"}``).
        progress: show a tqdm bar of (row, seed) cells done and the estimated time left.
        poll_s: wait between checks for units another process is running.
        figures: draw the reliability and probability-histogram figures.

    Returns:
        ``{"table", "complete", "cells_done", "cells_total", "files", "stopped"}``.

    Raises:
        ValueError: bad task / budget / backbone / rows / seeds, or an ``out`` holding another experiment.
    """
    if task not in ("la", "wmh"):
        raise ValueError(f"unknown task {task!r}; valid values are la, wmh.")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; valid values are {', '.join(BUDGETS)}.")
    if backbone not in ("unet", "resunet"):
        raise ValueError(f"unknown backbone {backbone!r}; valid values are unet, resunet.")
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}.")
    chosen = resolve_rows(rows)
    ensembles = [name for name, _, _, method in chosen if method == "ensemble"]
    if ensembles and int(seeds) < 2:
        raise ValueError(f"the ensemble rows {ensembles} need seeds >= 2 (one model per seed), got {seeds}.")
    out = Path(out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(BUDGETS[budget][task])
    if dataset_dir:
        settings = {k: v for k, v in settings.items() if k not in PHANTOM_ONLY}
    if budget != "full":  # validate once at the end: model.pt is the final model (full: best validation Dice)
        settings.update(num_workers=0, val_interval=settings["max_epochs"])
    common = {**settings, "dataset_dir": dataset_dir, "backbone": backbone, "progress": False, **(extra or {})}
    _check_experiment(
        out, {"task": task, "backbone": backbone, "budget": budget, "dataset_dir": dataset_dir, "overrides": common}
    )
    seed_list = list(range(int(seeds)))
    units = _plan(chosen, seed_list, out / "runs")
    cells = [u for u in units if u.row is not None]
    env = environment_info()
    deadline = time.time() + 60.0 * float(time_limit) if time_limit is not None else math.inf
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(cells),
        initial=sum(u.done() for u in cells),
        unit="run",
        disable=not progress,
        desc=f"table1 {task} {budget}",
        dynamic_ncols=True,
    )
    pending = [u for u in units if not u.done()]
    stopped = False
    while pending and not stopped:
        progressed = False
        for u in list(pending):
            if u.done():  # finished by another process
                pending.remove(u)
                bar.update(u.row is not None)
                continue
            if not all(d.done() for d in u.depends):
                continue
            # a vanilla model was trained on another machine whose checkpoints did not travel (e.g. a GPU session
            # that stopped between the two): it is retrained and re-scored, so a row and its PS / IR share one model
            retrain = [d for d in u.depends if not (d.run_dir / "models" / "model.pt").is_file()]
            # a vanilla model's post-hoc units follow it at once: budget for them too, so a stop never separates them
            est = _estimate(units, u.kind, budget) + sum(
                _estimate(units, p.kind, budget)
                for p in pending
                if any(d is u for d in p.depends) and p.kind == "posthoc" and not p.done()
            )
            est += len(retrain) * _estimate(units, "train", budget)
            if time.time() + est > deadline:
                stopped = True
                break
            if retrain:
                for d in retrain:
                    if _invalidate(d):
                        pending.insert(pending.index(u), d)
                        bar.update(-int(d.row is not None))
                continue
            lock = RunLock(u.run_dir / f".lock_{u.tag}")
            if not lock.acquire():
                continue
            try:
                if not u.done():
                    bar.set_postfix_str(f"{u.row or u.model} seed {u.seed}", refresh=True)
                    _run_unit(task, u, common, env)
            finally:
                lock.release()
            pending.remove(u)
            progressed = True
            bar.update(u.row is not None)
            left = sum(_estimate(units, p.kind, budget) for p in pending)
            bar.set_postfix_str(f"~{left / 60:.1f} min left" if left else "", refresh=True)
        if pending and not progressed and not stopped:
            if time.time() + poll_s > deadline:
                stopped = True
            else:
                time.sleep(poll_s)
    bar.close()
    result = write_outputs(
        out, task, budget, backbone, chosen, seed_list, units, env, common, dataset_dir, figures=figures
    )
    result["stopped"] = stopped
    return result


def add_common_arguments(p: argparse.ArgumentParser, default_out: str) -> None:
    """Options shared by ``table1`` and ``domain-shift``."""
    p.add_argument("--dataset-dir", default="", help="a real data set in a supported layout (default: the phantom)")
    p.add_argument("--backbone", choices=("unet", "resunet"), default="unet")
    p.add_argument("--seeds", type=int, default=3, help="models per row (default 3, as in the paper)")
    p.add_argument(
        "--rows",
        nargs="+",
        default=None,
        help="row names, slugs or a group (default: paper, the 13 rows; extended: those and the field's losses); "
        "e.g. dice dice_ps",
    )
    p.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    p.add_argument(
        "--budget",
        choices=tuple(BUDGETS),
        default="quick",
        help="quick: CPU smoke run; cpu: 2-core CPU; full: the paper's setting (GPU)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MIN",
        help="stop before starting work that would not finish within MIN minutes (exit code 75)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--export",
        default="",
        metavar="DIR",
        help="also copy the tables, figures, per-subject CSVs and manifest to DIR (e.g. results/la_cpu)",
    )
    add_set_argument(p)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``table1`` on the ``python -m monai_meep.apps.experiments`` parser."""
    p = subparsers.add_parser(
        "table1",
        help="the paper's Table 1 (all rows x seeds) through the bundles",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--task", choices=("wmh", "la"), required=True)
    add_common_arguments(p, "./runs/table1/<task>_<backbone>_<budget>")
    p.set_defaults(func=_main)
    return p


def _main(args: argparse.Namespace) -> int:
    out = args.out if "<task>" not in args.out else f"./runs/table1/{args.task}_{args.backbone}_{args.budget}"
    res = run_table1(
        task=args.task,
        out=out,
        rows=args.rows,
        seeds=args.seeds,
        backbone=args.backbone,
        budget=args.budget,
        dataset_dir=args.dataset_dir,
        time_limit=args.time_limit,
        extra=parse_set(args.set, args.allow_expressions),
        progress=not args.no_progress,
    )
    if args.export:
        export_results(out, args.export)
    print((Path(out) / "table1.md").read_text())
    print(f"[table1] {res['cells_done']}/{res['cells_total']} runs done -> {Path(out).absolute()}")
    return EXIT_STOPPED if res["stopped"] and not res["complete"] else 0
