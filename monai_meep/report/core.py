# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The streaming computation of a report: one case at a time, the pooled state a :class:`CalibrationHistogram`.

Reader threads load and check the next cases (:func:`~monai_meep.report.io.load_case`) while the main thread scores
the current one; at most ``workers + 1`` cases are in memory at once, whatever the number of cases. Per case: DSC,
HD and HD95 in mm on the hard (arg-max) prediction, and the calibration metrics of the case's histogram over the
convention's region; the case's histogram is then merged into the pooled one, from which the dataset-level
(pooled) values come. Both use :func:`histogram_metrics`, so a per-case value and a pooled value differ only in the
voxels they pool.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice
from tqdm.auto import tqdm

from monai_meep.metrics import (
    DEFAULT_NUM_SUB_BINS,
    CalibrationHistogram,
    brier_score_from_histogram,
    calibration_error_from_histogram,
    hausdorff_distance,
    negative_log_likelihood_from_histogram,
)
from monai_meep.metrics.conventions import CalibrationConvention, region_mask

from .io import CaseError, LoadedCase, load_case
from .pairing import CaseFiles, Problem

__all__ = ["CaseRecord", "ReportState", "column_name", "histogram_metrics", "num_sub_bins_for", "score_case", "stream"]

# metric -> higher is better (the direction the paired statistics use)
HIGHER_IS_BETTER = {"DSC": True}


def column_name(metric: str, cls: int | str | None) -> str:
    """``"ECE"`` for a single value, ``"ECE [2]"`` for class 2 (``"ECE [mean]"`` for the mean over classes)."""
    return metric if cls is None else f"{metric} [{cls}]"


def _per_class(metric: str, values: Sequence[float], classes: Sequence[int]) -> dict[str, float]:
    """One column per class; a single reported class gets the plain name, several also their mean."""
    vals = [float(v) for v in values]
    if len(classes) == 1:
        return {metric: vals[0]}
    out = {column_name(metric, c): v for c, v in zip(classes, vals, strict=True)}
    finite = [v for v in vals if not math.isnan(v)]
    out[column_name(metric, "mean")] = float(np.mean(finite)) if finite else math.nan
    return out


def num_sub_bins_for(num_bins: int) -> int:
    """Sub-bins of the report's histograms: 6000 (which 10, 15 and 20 bins divide), or a multiple of ``num_bins``."""
    return math.lcm(DEFAULT_NUM_SUB_BINS, int(num_bins))


def histogram_metrics(hist: CalibrationHistogram, conv: CalibrationConvention) -> dict[str, float]:
    """Brier, Brier+, NLL, ECE, MCE and ACE of a histogram (one case's, or the pooled one) under ``conv``.

    Class-wise (marginal) metrics report classes ``1..C-1`` (and 0 with ``include_background``); in top-label mode
    ECE / MCE / ACE are one value and Brier / Brier+ are reported for the foreground classes. NaN (no warning) where
    nothing is scored (an empty region, a class absent from the ground truth for Brier+).
    """
    bg = conv.include_background and conv.mode == "marginal"
    classes = list(range(0 if bg else 1, hist.num_classes))
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty strata are NaN by design; the report counts them
        out |= _per_class("Brier", brier_score_from_histogram(hist, bg).tolist(), classes)
        out |= _per_class("Brier+", brier_score_from_histogram(hist, bg, stratum="positive").tolist(), classes)
        out["NLL"] = float(negative_log_likelihood_from_histogram(hist))
        for name, norm in (("ECE", "l1"), ("MCE", "max"), ("ACE", "average")):
            v = calibration_error_from_histogram(hist, conv.num_bins, norm, conv.mode, "uniform", bg)
            if conv.mode == "top_label":
                out[name] = float(v)
            else:
                out |= _per_class(name, v.tolist(), classes)
    return out


def _geometry_metrics(probs: torch.Tensor, label: torch.Tensor, num_classes: int, spacing: Any) -> dict[str, float]:
    """DSC, HD and HD95 (mm) of the arg-max prediction per foreground class (MONAI's empty-mask conventions)."""
    hard = probs[0] > 0.5 if probs.shape[0] == 1 else probs.argmax(0)  # arg-max; one channel: p_fg > 0.5
    classes = torch.arange(num_classes).view(-1, *([1] * label.ndim))
    pred_oh = (hard.long()[None] == classes)[None].to(torch.uint8)
    gt_oh = (label.long()[None] == classes)[None].to(torch.uint8)
    fg = list(range(1, num_classes))
    out: dict[str, float] = {}
    # ignore_empty=False: an empty ground truth scores 1 if the prediction is empty too, else 0 (MONAI's rule)
    out |= _per_class("DSC", compute_dice(pred_oh, gt_oh, include_background=False, ignore_empty=False)[0].tolist(), fg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty masks: NaN (both) / inf (one), documented
        for name, q in (("HD (mm)", None), ("HD95 (mm)", 95)):
            hd = hausdorff_distance(pred_oh, gt_oh, spacing=spacing, percentile=q, include_background=False)
            out |= _per_class(name, hd[0].double().tolist(), fg)
    return out


def score_case(
    case: LoadedCase, conv: CalibrationConvention, num_sub_bins: int, ignore_index: int | None = None
) -> tuple[dict[str, float], CalibrationHistogram]:
    """All metrics of one loaded case, and its histogram (to merge into the pooled one).

    Args:
        case: the checked case (:func:`~monai_meep.report.io.load_case`).
        conv: the calibration convention (region, bins, mode).
        num_sub_bins: sub-bins of the histogram (:func:`num_sub_bins_for`).
        ignore_index: label value whose voxels are not scored by the calibration metrics (background for DSC / HD).

    Returns:
        ``({column: value}, histogram)``.
    """
    label = case.label
    if ignore_index is not None and ignore_index >= case.num_classes:
        geo_label = np.where(label == ignore_index, 0, label)
    else:
        geo_label = label
    probs_t, label_t = torch.from_numpy(case.probs), torch.from_numpy(label)
    values = _geometry_metrics(probs_t, torch.from_numpy(geo_label), case.num_classes, case.spacing)
    mask = region_mask(geo_label, conv.region, case.spacing, conv.band_mm, case.num_classes)
    hist = CalibrationHistogram(case.num_classes, num_sub_bins=num_sub_bins, check_sum=False)  # checked by load_case
    hist.update(
        probs_t[None],
        label_t[None, None],
        mask=None if mask is None else torch.from_numpy(mask)[None, None],
        ignore_index=ignore_index,
    )
    values["voxels scored"] = float(hist.num_voxels)
    values |= histogram_metrics(hist, conv)
    return values, hist


@dataclass
class CaseRecord:
    """One row of ``cases.csv``: a scored case (``status="ok"``) or a skipped one with its reason."""

    case: str
    status: str
    pred: str
    label: str
    values: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    spacing: str = ""


@dataclass
class ReportState:
    """What a report is made of, and what a merge of reports adds up: the per-case rows and the pooled histogram."""

    convention: CalibrationConvention
    num_sub_bins: int
    records: list[CaseRecord] = field(default_factory=list)
    histogram: CalibrationHistogram | None = None
    ignore_index: int | None = None

    @property
    def num_classes(self) -> int | None:
        return None if self.histogram is None else self.histogram.num_classes


def _prefetch(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, depth: int) -> Iterator[tuple[Any, Future]]:
    """``(item, future of fn(item))`` in order, with at most ``depth`` loads running or waiting ahead."""
    queue: deque[tuple[Any, Future]] = deque()
    try:
        for item in items:
            queue.append((item, pool.submit(fn, item)))
            if len(queue) >= depth:
                yield queue.popleft()
        while queue:
            yield queue.popleft()
    finally:  # the consumer stopped (a bad case raised): do not read the cases still waiting
        for _, fut in queue:
            fut.cancel()


def stream(
    cases: Sequence[CaseFiles],
    conv: CalibrationConvention,
    problems: Sequence[Problem] = (),
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "report",
    **load_kwargs: Any,
) -> ReportState:
    """Score ``cases`` one at a time, reading ahead on ``workers`` threads, into a :class:`ReportState`.

    Args:
        cases: the paired cases.
        conv: the calibration convention.
        problems: pairing problems; with ``skip_bad`` they become skipped rows, else the first raises.
        skip_bad: list a bad case as skipped (with its reason) instead of raising.
        workers: reader threads (default: every core).
        progress: show a tqdm progress bar (on stderr).
        desc: the bar's label.
        load_kwargs: passed to :func:`~monai_meep.report.io.load_case` (``spacing``, orders, ``npz_key``,
            ``ignore_index``).

    Returns:
        The state: a row per case (scored or skipped) and the pooled histogram (``None`` if nothing was scored).

    Raises:
        CaseError: the first bad case, without ``skip_bad``.
    """
    if problems and not skip_bad:
        p = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise CaseError(p.case, p.path, p.reason + more + "; --skip-bad lists such cases as skipped")
    sub_bins = num_sub_bins_for(conv.num_bins)
    state = ReportState(conv, sub_bins, ignore_index=load_kwargs.get("ignore_index"))
    state.records += [CaseRecord(p.case, "skipped", p.path, "", reason=p.reason) for p in problems]
    workers = max(1, int(workers or os.cpu_count() or 1))

    def skip_or_raise(files: CaseFiles, err: CaseError) -> None:
        if not skip_bad:
            raise err
        state.records.append(CaseRecord(files.case, "skipped", ";".join(files.pred), files.label, reason=err.reason))

    with ThreadPoolExecutor(workers, thread_name_prefix="report-read") as pool:
        bar = tqdm(total=len(cases), desc=desc, unit="case", disable=not progress)
        for files, fut in _prefetch(pool, lambda f: load_case(f, **load_kwargs), cases, workers + 1):
            bar.update(1)
            try:
                loaded = fut.result()
                if state.histogram is not None and loaded.num_classes != state.histogram.num_classes:
                    raise CaseError(
                        files.case,
                        files.pred[0],
                        f"{loaded.num_classes} classes, the cases before it have {state.histogram.num_classes}",
                    )
                values, hist = score_case(loaded, conv, sub_bins, state.ignore_index)
            except CaseError as e:
                skip_or_raise(files, e)
                continue
            except ValueError as e:  # the histogram's own checks; name the case
                skip_or_raise(files, CaseError(files.case, files.pred[0], str(e)))
                continue
            state.histogram = hist if state.histogram is None else state.histogram.merge(hist)
            spacing = "x".join(f"{s:g}" for s in loaded.spacing) + f" ({loaded.spacing_source})"
            state.records.append(CaseRecord(files.case, "ok", ";".join(files.pred), files.label, values, "", spacing))
            del loaded
        bar.close()
    return state
