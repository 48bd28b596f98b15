# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The report as Python functions: :func:`calibration_report` (folders in, a :class:`Report` and its files out),
:func:`merge_reports` (several reports' states added up exactly, re-rendered) and :func:`load_report`.

Files written to ``out`` (all at once: they are written into a temporary folder beside ``out`` that then replaces
it, so an error leaves ``out`` as it was and nothing half-written):

- ``cases.csv``: a row per case: status (``ok`` / ``skipped``), reason, files, spacing, every metric;
- ``summary.csv`` / ``summary.md``: a row per metric: mean, std, median over cases, and the pooled value;
- ``reliability_*.png`` / ``probability_histogram_*.png``: per reported class and of the top-label confidence;
- ``histogram.pt`` (the pooled :meth:`CalibrationHistogram.state_dict`) and ``report.json`` (the convention):
  what :func:`merge_reports` adds up;
- ``report.html``: all of it on one self-contained page;
- with ``compare``: ``compare.csv`` (side by side), ``paired.csv`` / ``compare.md`` (paired statistics) and
  ``models/<name>/`` holding each compared model's own tables and state.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from monai_meep.metrics import CalibrationHistogram
from monai_meep.metrics.conventions import CalibrationConvention, Region, calibration_convention
from monai_meep.utils import atomic_open

from .compare import compare_markdown, paired_frame, side_by_side
from .core import CaseRecord, ReportState, stream
from .figures import report_figures
from .html import render_html
from .pairing import DEFAULT_PATTERN, pair_cases
from .tables import ID_COLUMNS, cases_frame, summary_frame, summary_markdown

__all__ = ["Report", "calibration_report", "load_report", "merge_reports", "write_report"]

STATE_FILE, META_FILE = "histogram.pt", "report.json"
# the paired-statistics columns report.html shows (paired.csv has them all)
PAIRED_COLUMNS = ["model", "metric", "n_pairs", "mean_row", "mean_reference", "mean_difference", "ci_low", "ci_high",
                  "wilcoxon_p", "verdict"]  # fmt: skip
FORMAT_VERSION = 1


@dataclass
class Report:
    """Per model (the first is the reference): its state, cases table and summary; the paired table if several."""

    states: dict[str, ReportState]
    cases: dict[str, pd.DataFrame] = field(default_factory=dict)
    summaries: dict[str, pd.DataFrame] = field(default_factory=dict)
    paired: pd.DataFrame | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        for name, st in self.states.items():
            self.cases.setdefault(name, cases_frame(st))
            self.summaries.setdefault(name, summary_frame(st, self.cases[name]))
        if len(self.states) > 1 and self.paired is None:
            self.paired = paired_frame(self.cases)

    @property
    def reference(self) -> str:
        return next(iter(self.states))

    @property
    def summary(self) -> pd.DataFrame:
        """The reference model's summary table."""
        return self.summaries[self.reference]

    @property
    def histogram(self) -> CalibrationHistogram | None:
        """The reference model's pooled histogram."""
        return self.states[self.reference].histogram


def _names(paths: str) -> str:
    """File names only, for the HTML table (``;``-separated per-class files kept apart)."""
    return ";".join(Path(p).name for p in str(paths).split(";")) if isinstance(paths, str) else paths


def _folders(report: Report) -> list[str]:
    """A line per model naming the folders its cases came from (the HTML's tables show file names only)."""
    lines = []
    for name, st in report.states.items():
        preds = sorted({str(Path(r.pred.split(";")[0]).parent) for r in st.records if r.status == "ok"})
        labels = sorted({str(Path(r.label).parent) for r in st.records if r.status == "ok" and r.label})
        lines.append(f"{name}: predictions from {', '.join(preds) or '-'}; labels from {', '.join(labels) or '-'}.")
    return lines


def _model_names(folders: Sequence[str | os.PathLike]) -> list[str]:
    """A model's name is the shortest tail of its folder path that tells it from the others (``dice/eval/test/maps``
    vs ``dice_klyw/eval/test/maps`` -> ``dice`` / ``dice_klyw``, the first differing part); then a counter."""
    paths = [Path(f).resolve() for f in folders]
    parts = [p.parts[::-1] for p in paths]  # from the folder upwards
    names = [p.name or str(p) for p in paths]
    depth = max((len(x) for x in parts), default=0)
    for level in range(depth):
        at = [x[level] if level < len(x) else "" for x in parts]
        if len(set(at)) == len(at):  # this level tells every folder apart
            names = [a or str(p) for a, p in zip(at, paths, strict=True)]
            break
    return [n if names.count(n) == 1 else f"{n} ({i})" for i, n in enumerate(names)]


def calibration_report(
    pred: str | os.PathLike,
    label: str | os.PathLike,
    out: str | os.PathLike | None = None,
    preset: str = "meep",
    region: str | None = None,
    num_bins: int | None = None,
    band_mm: float | None = None,
    compare: Sequence[str | os.PathLike] = (),
    pred_glob: str = "*",
    label_glob: str = "*",
    pred_pattern: str = DEFAULT_PATTERN,
    label_pattern: str = DEFAULT_PATTERN,
    spacing: Sequence[float] | None = None,
    pred_order: str = "auto",
    label_order: str = "auto",
    npz_key: str | None = None,
    ignore_index: int | None = None,
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
    figures: bool = True,
) -> Report:
    """Calibration report of the probability maps of ``pred`` (and of each ``compare`` folder) against ``label``.

    Args:
        pred: folder of probability maps (see :mod:`monai_meep.report.io` for the layouts).
        label: folder of ground-truth label maps.
        out: folder to write the report to (replaced as a whole; ``None``: write nothing).
        preset: ``"meep"``, ``"mbls"`` or ``"monai"`` (:mod:`monai_meep.metrics.conventions`).
        region: ``"all"``, ``"foreground"`` or ``"boundary"`` instead of the preset's.
        num_bins: ECE bins instead of the preset's.
        band_mm: width of the boundary region (mm, default 2).
        compare: more prediction folders (other models on the same labels), compared with ``pred``.
        pred_glob, label_glob: shell patterns selecting the files (e.g. ``"*.npz"`` in an nnU-Net output folder).
        pred_pattern, label_pattern: regular expressions for the case ID (group ``case``) and class (group ``cls``)
            of a file stem (:mod:`monai_meep.report.pairing`).
        spacing: voxel size (mm) of cases with no NIfTI file (default 1 mm).
        pred_order, label_order: spatial order of NumPy inputs (``"auto"``, ``"xyz"``, ``"zyx"``).
        npz_key: the array of ``.npz`` files holding several.
        ignore_index: label value not scored by the calibration metrics (background for DSC / HD).
        skip_bad: list bad cases as skipped instead of raising.
        workers: reader threads (default: every core).
        progress: tqdm progress bars.
        figures: draw the figures (needs matplotlib).

    Returns:
        The :class:`Report`.

    Raises:
        CaseError: the first bad case (a ``ValueError`` naming the case and file), without ``skip_bad``.
        FileNotFoundError, ValueError: missing folders, bad options, no file found.

    Example:
        >>> rep = calibration_report("preds", "labels", out="report", preset="meep")  # doctest: +SKIP
        >>> rep.summary.set_index("metric").loc["ECE", ["mean", "pooled"]]  # doctest: +SKIP
    """
    conv = calibration_convention(preset, region, num_bins, band_mm)
    folders = [pred, *compare]
    names = _model_names(folders)
    kwargs = dict(spacing=spacing, pred_order=pred_order, label_order=label_order, npz_key=npz_key)
    states = {}
    for name, folder in zip(names, folders, strict=True):
        pairing = pair_cases(folder, label, pred_glob, label_glob, pred_pattern, label_pattern)
        if pairing.unused_labels:
            first = pairing.unused_labels[0]
            warnings.warn(
                f"{name}: {len(pairing.unused_labels)} label file(s) have no prediction and are not scored "
                f"(e.g. {first}).",
                stacklevel=2,
            )
        states[name] = stream(
            pairing.cases,
            conv,
            pairing.problems,
            skip_bad,
            workers,
            progress,
            name,
            ignore_index=ignore_index,
            **kwargs,
        )
    report = Report(states)
    if out is not None:
        write_report(report, out, figures=figures)
    return report


def _meta(state: ReportState) -> dict[str, Any]:
    conv = asdict(state.convention)
    conv["region"] = str(state.convention.region)
    return {
        "format_version": FORMAT_VERSION,
        "convention": conv,
        "num_sub_bins": state.num_sub_bins,
        "num_classes": state.num_classes,
        "ignore_index": state.ignore_index,
    }


def _write_model(folder: Path, state: ReportState, cases: pd.DataFrame, summary: pd.DataFrame, title: str) -> None:
    with atomic_open(folder / "cases.csv", newline="") as f:
        cases.to_csv(f, index=False, float_format="%.10g")
    with atomic_open(folder / "summary.csv", newline="") as f:
        summary.to_csv(f, index=False, float_format="%.10g")
    with atomic_open(folder / "summary.md") as f:
        f.write(summary_markdown(state, summary, cases, title))
    with atomic_open(folder / META_FILE) as f:
        json.dump(_meta(state), f, indent=2)
    if state.histogram is not None:
        with atomic_open(folder / STATE_FILE, "wb") as f:
            torch.save(state.histogram.state_dict(), f)


def _commit(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder onto ``out`` (a previous report there is replaced)."""
    if out.exists():
        if any(out.iterdir()) and not (out / META_FILE).exists():
            raise FileExistsError(f"{out} exists and is not a report folder (no {META_FILE}); choose another --out.")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def write_report(report: Report, out: str | os.PathLike, figures: bool = True, title: str = "") -> str:
    """Write every file of ``report`` to ``out`` at once (see the module docstring); returns ``out``.

    Raises:
        FileExistsError: ``out`` is a non-empty folder that does not hold a report (it is never overwritten).
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and any(out.iterdir()) and not (out / META_FILE).exists():
        raise FileExistsError(f"{out} exists and is not a report folder (no {META_FILE}); choose another --out.")
    ref = report.reference
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_model(staging, report.states[ref], report.cases[ref], report.summary, title or ref)
        tables = {"Summary": report.summary}
        hists = {n: s.histogram for n, s in report.states.items() if s.histogram is not None}
        if len(report.states) > 1:
            for name in list(report.states)[1:]:
                st = report.states[name]
                _write_model(staging / "models" / name, st, report.cases[name], report.summaries[name], name)
            table = side_by_side(report.summaries)
            with atomic_open(staging / "compare.csv", newline="") as f:
                table.to_csv(f, index=False, float_format="%.10g")
            with atomic_open(staging / "paired.csv", newline="") as f:
                report.paired.to_csv(f, index=False, float_format="%.10g")
            with atomic_open(staging / "compare.md") as f:
                f.write(compare_markdown(table, report.paired))
            shown = [c for c in PAIRED_COLUMNS if c in report.paired.columns]
            tables = {
                "Models side by side (mean over cases, pooled)": table,
                f"Paired differences against {ref} (over the cases both scored)": report.paired[shown],
            }
            title = title or f"{ref} vs {', '.join(list(report.states)[1:])}"
        pngs = report_figures(hists, report.states[ref].convention) if figures and hists else {}
        for name, png in pngs.items():
            with atomic_open(staging / name, "wb") as f:
                f.write(png)
        title = title or ref
        cases = report.cases[ref]
        ok = cases[cases["status"] == "ok"].drop(columns=["status", "reason"])
        ok = ok.assign(pred=ok["pred"].map(_names), label=ok["label"].map(_names))  # the folders are in the notes
        skipped = pd.concat([c[c["status"] != "ok"].assign(model=n) for n, c in report.cases.items()])
        skipped = skipped[["model", "case", "pred", "label", "reason"]]
        st = report.states[ref]
        notes = [
            f"{len(ok)} case(s) scored, {len(cases) - len(ok)} skipped; {st.num_classes or '?'} classes; "
            f"{st.convention.describe()}.",
            "mean / std (ddof=1) / median over cases; pooled: every scored voxel of every case in one histogram "
            "(exact int64 counts and float64 sums). DSC / HD / HD95 on the arg-max prediction, per foreground "
            "class, HD in mm; an empty mask gives NaN (both empty) or inf (one empty).",
            *_folders(report),
        ]
        with atomic_open(staging / "report.html") as f:
            page = render_html(f"Calibration report: {title}", notes, tables, pngs, skipped, {f"Cases ({ref})": ok})
            f.write(page)
        _commit(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.out = str(out)
    return str(out)


def load_report(folder: str | os.PathLike) -> ReportState:
    """The state of a written report (``report.json``, ``histogram.pt``, ``cases.csv``), for :func:`merge_reports`.

    Raises:
        FileNotFoundError: ``folder`` holds no report.
    """
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no report ({META_FILE} missing).")
    meta = json.loads((folder / META_FILE).read_text())
    c = meta["convention"]
    conv = CalibrationConvention(c["name"], Region(c["region"]), c["num_bins"], c["mode"], c["include_background"],
                                 c["band_mm"])  # fmt: skip
    state = ReportState(conv, int(meta["num_sub_bins"]), ignore_index=meta.get("ignore_index"))
    if (folder / STATE_FILE).is_file():
        sd = torch.load(folder / STATE_FILE, weights_only=True)
        state.histogram = CalibrationHistogram(int(sd["num_classes"]), int(sd["num_sub_bins"])).load_state_dict(sd)
    cases = pd.read_csv(folder / "cases.csv", dtype={"case": str}, keep_default_na=False, na_values=[""])
    for r in cases.to_dict("records"):
        values = {k: float(v) for k, v in r.items() if k not in ID_COLUMNS}
        text = {k: "" if pd.isna(r.get(k)) else str(r[k]) for k in ID_COLUMNS}
        rec = CaseRecord(text["case"], text["status"], text["pred"], text["label"], {}, text["reason"])
        rec.spacing = text["spacing (mm)"]
        if rec.status == "ok":
            rec.values = values
        state.records.append(rec)
    return state


def merge_reports(folders: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, **kwargs: Any) -> Report:
    """Add up the states of several reports (e.g. one per folder or machine) exactly, and re-render.

    The pooled histograms are merged (int64 counts add exactly; float64 sums to rounding) and the case rows
    concatenated, so the result equals one report over all the cases.

    Args:
        folders: written report folders, all with one convention and class count.
        out: where to write the merged report (``None``: nothing written).
        kwargs: passed to :func:`write_report` (``figures``, ``title``).

    Raises:
        ValueError: the reports differ in convention, sub-bins or classes, or a case is scored in two of them.
    """
    states = [load_report(f) for f in folders]
    if not states:
        raise ValueError("merge_reports needs at least one report folder.")
    first = states[0]
    merged = ReportState(first.convention, first.num_sub_bins, ignore_index=first.ignore_index)
    seen: dict[str, str] = {}
    for folder, st in zip(folders, states, strict=True):
        if (st.convention, st.num_sub_bins, st.ignore_index) != (
            first.convention,
            first.num_sub_bins,
            first.ignore_index,
        ):
            raise ValueError(f"{folder} was made with {st.convention} (ignore_index={st.ignore_index}); "
                             f"{folders[0]} with {first.convention} (ignore_index={first.ignore_index}).")  # fmt: skip
        for r in st.records:
            if r.status == "ok":
                if r.case in seen:
                    raise ValueError(f"case {r.case!r} is scored in both {seen[r.case]} and {folder}.")
                seen[r.case] = str(folder)
        merged.records += st.records
        if st.histogram is not None:
            merged.histogram = st.histogram if merged.histogram is None else merged.histogram.merge(st.histogram)
    report = Report({_model_names(folders[:1])[0] if len(folders) == 1 else "merged": merged})
    if out is not None:
        write_report(report, out, **kwargs)
    return report
