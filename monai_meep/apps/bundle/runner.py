# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Run the project's bundles programmatically, so experiments reuse the one pipeline the bundles define.

``run_bundle("la", "train", overrides)`` is what ``python -m monai.bundle run --config_file "['configs/train.json']"
--key value ...`` does, in this process (``monai.bundle.ConfigWorkflow``) or, with ``subprocess=True``, in a fresh
interpreter running exactly that command line. Evaluate / calibrate configs are layered on train.json, as on the
command line; ``inference.json`` runs on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_meep.utils import atomic_open

__all__ = [
    "LEGACY_TEST_PREFIX",
    "TEST_PREFIX",
    "WORKFLOWS",
    "add_set_argument",
    "bundle_dir",
    "config_files",
    "file_logging_conf",
    "parse_set",
    "read_metrics",
    "run_bundle",
]

# workflow -> (config files layered in order, MONAI workflow type for check_properties)
WORKFLOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("train.json",), "train"),
    "evaluate": (("train.json", "evaluate.json"), "eval"),
    "calibrate": (("train.json", "calibrate.json"), "eval"),
    "inference": (("inference.json",), "infer"),  # self-contained, as in MONAI model-zoo
    "multi_gpu_train": (("train.json", "multi_gpu_train.json"), "train"),
    "multi_gpu_evaluate": (("train.json", "evaluate.json", "multi_gpu_evaluate.json"), "eval"),
}


def bundle_dir(task: str) -> Path:
    """The bundle folder of ``task``, first found of: ``$MONAI_MEEP_BUNDLES/<task>_meep``, ``bundles/<task>_meep`` of
    the checkout the package runs from, ``<sys.prefix>/share/monai_meep/bundles/<task>_meep`` (an installed wheel).

    Raises:
        ValueError: unknown task or no bundle folder found.
    """
    if task not in ("wmh", "la"):
        raise ValueError(f"unknown task {task!r}; valid values are wmh, la.")
    roots = [
        os.environ.get("MONAI_MEEP_BUNDLES", ""),
        str(Path(__file__).resolve().parents[3] / "bundles"),  # <checkout>/monai_meep/apps/bundle/runner.py
        str(Path(sys.prefix) / "share" / "monai_meep" / "bundles"),
    ]
    for root in roots:
        if root and (Path(root) / f"{task}_meep" / "configs" / "train.json").is_file():
            return Path(root) / f"{task}_meep"
    raise ValueError(
        f"bundle {task}_meep not found (looked in {[r for r in roots if r]}); set MONAI_MEEP_BUNDLES to the folder "
        "holding wmh_meep/ and la_meep/."
    )


def config_files(task: str, workflow: str) -> list[str]:
    """Absolute config paths of ``workflow`` (a key of :data:`WORKFLOWS`) for ``task``."""
    if workflow not in WORKFLOWS:
        raise ValueError(f"unknown workflow {workflow!r}; valid values are {', '.join(WORKFLOWS)}.")
    root = bundle_dir(task) / "configs"
    return [str(root / f) for f in WORKFLOWS[workflow][0]]


def run_bundle(
    task: str,
    workflow: str,
    overrides: Mapping[str, Any] | None = None,
    subprocess_run: bool = False,
    check: bool = True,
    log_file: str | os.PathLike | None = None,
    logging_file: str | None = None,
) -> float:
    """Run one bundle workflow of ``task`` with config ``overrides``; return its wall time in seconds.

    Args:
        task: ``"wmh"`` or ``"la"``.
        workflow: ``train``, ``evaluate``, ``calibrate``, ``inference``, ``multi_gpu_train``, ``multi_gpu_evaluate``
            (the multi-GPU ones only make sense under ``torchrun``).
        overrides: config ids -> values, as ``--key value`` on the command line (e.g. ``{"max_epochs": 5}``).
        subprocess_run: run ``python -m monai.bundle run`` in a child process (isolated; output to ``log_file``).
        check: fail when ``check_properties()`` reports missing or wrongly referenced properties.
        log_file: where the child's output goes (subprocess mode only); default: inherited.
        logging_file: a ``logging.conf`` replacing the bundle's (in-process mode), e.g. to log to a file.

    Raises:
        ValueError: bad task / workflow, or missing bundle properties.
        RuntimeError: the child process failed (subprocess mode).
    """
    files = config_files(task, workflow)
    overrides = dict(overrides or {})
    overrides.setdefault("bundle_root", str(bundle_dir(task)))
    start = time.perf_counter()
    if subprocess_run:
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(files)]
        for k, v in overrides.items():
            cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]  # fire parses Python literals
        out = open(log_file, "a") if log_file else None
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT if out else None, check=False).returncode
        finally:
            if out:
                out.close()
        if rc != 0:
            raise RuntimeError(
                f"bundle run failed (exit {rc}): {' '.join(cmd)}" + (f"; see {log_file}" if log_file else "")
            )
        return time.perf_counter() - start

    from monai.bundle import ConfigWorkflow

    with warnings.catch_warnings():
        # MONAI 1.6 warns about evaluating config expressions on every parse; these are our own configs
        warnings.filterwarnings("ignore", message=".*(security|eval).*", category=UserWarning)
        wf = ConfigWorkflow(
            config_file=files,
            meta_file=str(bundle_dir(task) / "configs" / "metadata.json"),
            logging_file=logging_file or str(bundle_dir(task) / "configs" / "logging.conf"),
            workflow_type=WORKFLOWS[workflow][1],
            **overrides,
        )
        wf.initialize()
        if check:
            missing = wf.check_properties()
            if missing:
                raise ValueError(f"bundle {task}_meep {workflow}: missing or mis-referenced properties {missing}.")
        wf.run()
        wf.finalize()
    return time.perf_counter() - start


#: prefix of the test-split metric names of the bundles' ``evaluate.json`` (``test_mean_dice_raw.csv``, ...)
TEST_PREFIX = "test_"
#: the prefix the test-split metrics had before they were renamed (evaluation folders written by earlier versions)
LEGACY_TEST_PREFIX = "val_"


def read_metrics(eval_dir: str | os.PathLike, legacy_test_names: bool = True) -> dict[str, dict[str, float]]:
    """Per-subject values of every metric written by ``MetricsSaver`` in ``eval_dir``: ``{metric: {subject: v}}``.

    Reads the ``<metric>_raw.csv`` files (``filename,foreground[,...],mean[,region]``) and keeps the ``mean`` column.

    Args:
        eval_dir: an evaluation folder of the test split (``eval/test[_<calibrator>]``).
        legacy_test_names: a test-split folder written before the rename holds ``val_<name>_raw.csv``: return its
            values as ``test_<name>`` (a ``test_<name>_raw.csv`` beside it wins). Pass ``False`` for a folder of the
            validation split, whose metrics are ``val_*``.
    """
    import csv

    out: dict[str, dict[str, float]] = {}
    legacy: dict[str, dict[str, float]] = {}
    for path in sorted(Path(eval_dir).glob("*_raw.csv")):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        name = path.name[: -len("_raw.csv")]
        values = {r["filename"]: float(r["mean"]) for r in rows}
        if legacy_test_names and name.startswith(LEGACY_TEST_PREFIX):
            legacy[TEST_PREFIX + name[len(LEGACY_TEST_PREFIX) :]] = values
        else:
            out[name] = values
    for name, values in legacy.items():
        out.setdefault(name, values)
    return out


def read_calibration_state(eval_dir: str | os.PathLike) -> Any:
    """The pooled calibration histogram an evaluation wrote (``calibration_state.pt``, see
    :func:`monai_meep.metrics.save_calibration_state`), or ``None`` for a folder written before it existed (readers
    then fall back to ``reliability.csv``).

    Raises:
        ValueError: the file exists but is damaged, edited, or of another format version.
    """
    from monai_meep.metrics import STATE_FILE, load_calibration_state

    path = Path(eval_dir) / STATE_FILE
    return load_calibration_state(path) if path.is_file() else None


def add_set_argument(parser: Any, applies_to: str = "every run") -> None:
    """Add the repeatable ``--set KEY=VALUE`` bundle-override option that :func:`parse_set` reads, and
    ``--allow-expressions``."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"extra bundle override for {applies_to}, VALUE parsed as JSON when possible (repeatable); values that "
        "MONAI's config parser would evaluate ('$...' Python, '@' references, '%%' macros) need --allow-expressions",
    )
    parser.add_argument(
        "--allow-expressions",
        action="store_true",
        help="let --set values start with '$' (run as Python by MONAI's config parser), '@' or '%%'",
    )


#: first characters MONAI's ``ConfigParser`` treats specially in a string value: ``$`` is evaluated as Python,
#: ``@`` references another key, ``%`` imports a macro (possibly from another file).
EXPRESSION_PREFIXES = ("$", "@", "%")


def _expressions(value: Any) -> list[str]:
    """The strings in ``value`` (nested in JSON lists / objects too) that MONAI would evaluate or resolve."""
    if isinstance(value, str):
        return [value] if value.lstrip().startswith(EXPRESSION_PREFIXES) else []
    if isinstance(value, dict):
        return [e for v in value.values() for e in _expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    return []


def parse_set(items: Sequence[str], allow_expressions: bool = False) -> dict[str, Any]:
    """``["k=v", ...]`` -> overrides, values parsed as JSON when possible.

    Args:
        items: ``KEY=VALUE`` strings.
        allow_expressions: accept values MONAI's config parser would evaluate or resolve (``$`` Python code, ``@``
            references, ``%`` macros). Off by default: the runner hides MONAI's warning about evaluating config
            expressions (its own configs need it), so a ``--set`` value must not execute code unseen.

    Raises:
        SystemExit: an item without ``=``, or an expression value without ``allow_expressions`` (the CLI's error).
    """
    extra: dict[str, Any] = {}
    for kv in items:
        if "=" not in kv:
            raise SystemExit(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
        found = _expressions(extra[k])
        if found and not allow_expressions:
            raise SystemExit(
                f"--set {k}: value {found[0]!r} would be evaluated by MONAI's config parser ('$' runs Python, '@' and "
                f"'%' resolve references); pass --allow-expressions to allow it."
            )
    return extra


def file_logging_conf(run_dir: str | os.PathLike) -> str:
    """Write ``run_dir/logging.conf``, a bundle logging config that sends INFO logs to ``run_dir/bundle.log``, so the
    console keeps the runner's own output (summary, progress bar); returns its path for ``run_bundle``."""
    run_dir = Path(run_dir)
    log = run_dir / "bundle.log"
    with atomic_open(run_dir / "logging.conf") as f:
        f.write(
            "[loggers]\nkeys=root\n\n[handlers]\nkeys=file\n\n[formatters]\nkeys=plain\n\n"
            "[logger_root]\nlevel=INFO\nhandlers=file\n\n"
            f"[handler_file]\nclass=FileHandler\nlevel=INFO\nformatter=plain\nargs=({str(log)!r}, 'a')\n\n"
            "[formatter_plain]\nformat=%(asctime)s - %(name)s - %(levelname)s - %(message)s\n"
        )
    return str(run_dir / "logging.conf")
