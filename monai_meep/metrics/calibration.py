# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Functional calibration metrics: ECE / MCE / RMSCE / ACE, Brier and stratified Brier, NLL, reliability curves.

Every function is a reduction of a :class:`~monai_meep.metrics.histogram.CalibrationHistogram`: the ``*_from_histogram``
variants take an accumulated histogram (streaming, pooled, DDP-reduced), the plain variants build one from
``(probs, target, mask)`` and pool over every voxel given. Values are float64. Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from monai_meep.utils import check_int

from .histogram import DEFAULT_NUM_SUB_BINS, CalibrationHistogram

__all__ = [
    "CALIBRATION_NORMS",
    "ReliabilityCurve",
    "brier_score",
    "brier_score_from_histogram",
    "calibration_error",
    "calibration_error_from_histogram",
    "negative_log_likelihood",
    "negative_log_likelihood_from_histogram",
    "reliability_curve",
    "reliability_curve_from_histogram",
]

# norm names, and MONAI's CalibrationReduction names for the same reductions
#: accepted ``norm`` names -> the reduction computed (shared with the metric classes' argument check)
CALIBRATION_NORMS = {"l1": "l1", "expected": "l1", "l2": "l2", "max": "max", "maximum": "max", "average": "average"}


def _warn_nan(what: str) -> None:
    warnings.warn(f"{what} is NaN: no voxel to average over (empty mask, or an empty stratum / bin set).")


def _histogram_for(
    probs: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    num_sub_bins: int,
    ignore_index: int | None,
    check_sum: bool,
) -> CalibrationHistogram:
    if not isinstance(probs, torch.Tensor) or probs.ndim < 2:
        raise ValueError(f"probs must be a tensor (B, C, *spatial), got {getattr(probs, 'shape', type(probs))}.")
    num_classes = max(2, int(probs.shape[1]))
    h = CalibrationHistogram(num_classes, num_sub_bins=num_sub_bins, check_sum=check_sum)
    return h.update(probs, target, mask=mask, ignore_index=ignore_index)


def _sub_bins(num_bins: int, binning: str) -> int:
    # checked here: num_bins=0 would otherwise surface as "num_sub_bins must be >= 1", an argument nobody passed
    num_bins = check_int(num_bins, "num_bins", minimum=1)
    # uniform bins need no finer grid than the bins themselves; adaptive bins need the fine grid
    return num_bins if binning == "uniform" else DEFAULT_NUM_SUB_BINS


def _rows(hist: CalibrationHistogram, mode: str, include_background: bool) -> slice:
    return slice(0 if include_background or mode == "top_label" else 1, None)


def calibration_error_from_histogram(
    hist: CalibrationHistogram,
    num_bins: int = 15,
    norm: str = "l1",
    mode: str = "marginal",
    binning: str = "uniform",
    include_background: bool = False,
) -> torch.Tensor:
    """Calibration error of an accumulated histogram; see :func:`calibration_error` for the arguments.

    Returns:
        float64 ``(K,)`` for ``mode="marginal"`` (one value per reported class), a 0-dim tensor for ``"top_label"``.
    """
    key = CALIBRATION_NORMS.get(str(norm).lower())
    if key is None:
        raise ValueError(f"norm must be one of {sorted(CALIBRATION_NORMS)}, got {norm!r}.")
    cnt, hit, sm, _, _ = hist.bin_statistics(num_bins, mode=mode, binning=binning)
    rows = _rows(hist, mode, include_background)
    cnt, hit, sm = cnt[rows].double(), hit[rows].double(), sm[rows]
    total = cnt.sum(1)
    diff = (sm - hit).abs()  # = n_b * |mean confidence - observed frequency| in bin b
    with torch.no_grad():
        gap = diff / cnt  # NaN for empty bins, excluded below
        if key == "l1":
            out = diff.sum(1) / total
        elif key == "l2":
            out = torch.sqrt(torch.nansum(diff * gap, 1) / total)
        elif key == "max":
            out = torch.nan_to_num(gap, nan=-math.inf).amax(1)
        else:
            out = torch.nanmean(gap, 1)
    out = torch.where(total > 0, out, torch.full_like(out, math.nan))
    if bool((total == 0).any()):
        _warn_nan("calibration error")
    return out[0] if mode == "top_label" else out


def calibration_error(
    probs: torch.Tensor,
    target: torch.Tensor,
    num_bins: int = 15,
    norm: str = "l1",
    mode: str = "marginal",
    binning: str = "uniform",
    include_background: bool = False,
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
    check_sum: bool = True,
) -> torch.Tensor:
    """Binned calibration error pooled over every voxel given (ECE, RMSCE, MCE, ACE).

    With ``n_b`` voxels, mean confidence ``conf_b`` and observed frequency ``freq_b`` in bin ``b`` (``N`` in all):

    - ``norm="l1"`` (alias ``"expected"``): ECE ``= sum_b (n_b / N) |conf_b - freq_b|`` (the paper's metric with
      15 uniform bins on the foreground probability);
    - ``norm="l2"``: RMSCE ``= sqrt(sum_b (n_b / N) (conf_b - freq_b)^2)`` (torchmetrics' ``l2``);
    - ``norm="max"`` (alias ``"maximum"``): MCE ``= max_b |conf_b - freq_b|`` over non-empty bins;
    - ``norm="average"``: ACE as in MONAI / netcal, the *unweighted* mean of ``|conf_b - freq_b|`` over non-empty
      bins. Nixon et al.'s *adaptive* calibration error is ``binning="adaptive"`` with ``norm="l1"``, averaged over
      the classes returned by ``mode="marginal"``.

    Args:
        probs: ``(B, C, *spatial)`` probabilities (softmax), or ``(B, 1, *spatial)`` sigmoid foreground probability.
        target: ``(B, 1, *spatial)`` class indices or ``(B, C, *spatial)`` one-hot.
        num_bins: number of bins.
        norm: see above.
        mode: ``"marginal"``: one-vs-rest per class on ``p_c`` vs ``y == c``; ``"top_label"``: arg-max confidence
            vs correctness (one scalar; ``include_background`` does not apply).
        binning: ``"uniform"`` (equal width, bins ``[k/n, (k+1)/n)``, the last closed) or ``"adaptive"`` (equal
            mass, edges snapped to a 1/6000 grid, see :meth:`CalibrationHistogram.bin_statistics`).
        include_background: report class 0 (marginal mode). For a binary task ``False`` gives the foreground ECE.
        mask: optional boolean ``(B, 1, *spatial)``; only ``True`` voxels are scored.
        ignore_index: optional label whose voxels are skipped (index targets), e.g. 2 for WMH.
        check_sum: check that multi-channel probabilities sum to 1.

    Returns:
        float64 ``(K,)`` (marginal, ``K = C`` or ``C - 1``) or 0-dim (top-label). NaN with a warning if no voxel is
        scored.

    Raises:
        ValueError: bad shapes or values (see :meth:`CalibrationHistogram.update`), unknown ``norm`` / ``mode`` /
            ``binning``.

    Example:
        >>> probs = torch.tensor([0.125, 0.875, 0.75, 0.25]).view(1, 1, 4)  # sigmoid foreground probabilities
        >>> target = torch.tensor([0, 1, 1, 1]).view(1, 1, 4)
        >>> calibration_error(probs, target, num_bins=10)  # one voxel per bin: (0.125 + 0.125 + 0.25 + 0.75) / 4
        tensor([0.3125], dtype=torch.float64)
    """
    h = _histogram_for(probs, target, mask, _sub_bins(num_bins, binning), ignore_index, check_sum)
    return calibration_error_from_histogram(h, num_bins, norm, mode, binning, include_background)


def brier_score_from_histogram(
    hist: CalibrationHistogram, include_background: bool = False, stratum: str | None = None
) -> torch.Tensor:
    """Brier score per class of an accumulated histogram; see :func:`brier_score`. Returns float64 ``(K,)``."""
    n = hist.num_voxels.double()
    pos = hist.class_counts.double()
    if stratum is None:
        num, den = hist.brier_sums, n.expand_as(pos)
    elif stratum == "positive":
        num, den = hist.brier_pos_sums, pos
    elif stratum == "negative":
        num, den = hist.brier_sums - hist.brier_pos_sums, n - pos
    else:
        raise ValueError(f"stratum must be None, 'positive' or 'negative', got {stratum!r}.")
    rows = _rows(hist, "marginal", include_background)
    num, den = num[rows], den[rows]
    if bool((den == 0).any()):
        _warn_nan(f"Brier score (stratum={stratum})")
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, math.nan))


def brier_score(
    probs: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = False,
    stratum: str | None = None,
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
    check_sum: bool = True,
) -> torch.Tensor:
    """Brier score of each class probability against its one-hot label, pooled over every voxel given.

    ``Brier_c = mean_i (p_ic - [y_i == c])^2``. ``stratum="positive"`` is Brier+ (Wallace & Dahabreh): the mean over
    voxels labelled ``c`` only, ``mean_{i: y_i = c} (1 - p_ic)^2``; ``stratum="negative"`` the mean over the
    others, ``mean_{i: y_i != c} p_ic^2``. For a binary task with ``include_background=False`` this is the paper's
    Brier of the foreground probability (and the paper's Brier+ with ``stratum="positive"``). The multi-class
    Brier score of Brier (1950) is the sum over all classes (``include_background=True``) of these values.

    Args:
        probs, target, mask, ignore_index, check_sum: as for :func:`calibration_error`.
        include_background: report class 0.
        stratum: ``None`` (all voxels), ``"positive"`` or ``"negative"``.

    Returns:
        float64 ``(K,)``; NaN with a warning for a class whose stratum is empty.

    Example:
        >>> probs = torch.tensor([0.125, 0.875, 0.75, 0.25]).view(1, 1, 4)
        >>> brier_score(probs, torch.tensor([0, 1, 1, 1]).view(1, 1, 4))  # (2 * 0.125^2 + 0.25^2 + 0.75^2) / 4
        tensor([0.1641], dtype=torch.float64)
    """
    h = _histogram_for(probs, target, mask, 1, ignore_index, check_sum)
    return brier_score_from_histogram(h, include_background, stratum)


def negative_log_likelihood_from_histogram(hist: CalibrationHistogram) -> torch.Tensor:
    """Mean negative log-likelihood of an accumulated histogram (float64, 0-dim); see
    :func:`negative_log_likelihood`."""
    n = hist.num_voxels
    if int(n) == 0:
        _warn_nan("negative log-likelihood")
        return torch.full((), math.nan, dtype=torch.float64, device=hist.nll_sum.device)
    return hist.nll_sum / n.double()


def negative_log_likelihood(
    probs: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
    check_sum: bool = True,
) -> torch.Tensor:
    """Mean negative log-likelihood (nats) of the true class, pooled over every voxel given.

    ``NLL = -(1/N) sum_i log max(p_{i, y_i}, eps)``, ``eps = torch.finfo(probs.dtype).eps`` (scikit-learn's
    ``log_loss`` clips the same way), so a saturated wrong prediction costs ``-log(eps)`` (15.9 for float32)
    instead of ``inf``. For a 1-channel sigmoid input this is the binary cross-entropy.

    Args:
        probs, target, mask, ignore_index, check_sum: as for :func:`calibration_error`.

    Returns:
        float64 0-dim tensor; NaN with a warning if no voxel is scored.

    Example:
        >>> p = torch.tensor([[0.5, 0.5], [0.25, 0.75]]).T.reshape(1, 2, 2)  # two voxels, two classes
        >>> round(float(negative_log_likelihood(p, torch.tensor([[[0, 1]]]))), 4)  # (log 2 + log 4/3) / 2
        0.4904
    """
    h = _histogram_for(probs, target, mask, 1, ignore_index, check_sum)
    return negative_log_likelihood_from_histogram(h)


@dataclass
class ReliabilityCurve:
    """Data of a reliability diagram: ``K`` rows (classes, or one top-label row) of ``num_bins`` bins.

    Attributes:
        confidence: float64 ``(K, num_bins)``: mean predicted probability of the voxels in each bin (x axis of the
            diagram; NaN for an empty bin).
        frequency: float64 ``(K, num_bins)``: observed frequency in each bin (y axis): the fraction of the bin's
            voxels labelled with the row's class (marginal) or correctly classified (top-label); NaN if empty.
        counts: int64 ``(K, num_bins)``: voxels per bin (the probability histogram of paper Fig. 2).
        bin_lower, bin_upper: float64 ``(K, num_bins)``: bin edges (uniform: ``k / num_bins``; adaptive: edges of
            the outermost non-empty sub-bins, NaN for empty bins).
        classes: the class index of each row (marginal mode), or ``None`` for the single top-label row.
        mode, binning: how the bins were built.
    """

    confidence: torch.Tensor
    frequency: torch.Tensor
    counts: torch.Tensor
    bin_lower: torch.Tensor
    bin_upper: torch.Tensor
    classes: list[int] | None
    mode: str = "marginal"
    binning: str = "uniform"

    @property
    def gap(self) -> torch.Tensor:
        """``confidence - frequency`` per bin (> 0: over-confident)."""
        return self.confidence - self.frequency

    @property
    def ece(self) -> torch.Tensor:
        """l1 calibration error of each row *at these bins*, float64 ``(K,)`` (NaN for an empty row)."""
        n = self.counts.sum(1).double()
        return torch.nansum(self.counts.double() * self.gap.abs(), 1) / n

    def row(self, cls: int) -> ReliabilityCurve:
        """The one-row curve of class ``cls`` (marginal mode), e.g. one panel of a diagram."""
        if self.classes is None or cls not in self.classes:
            raise ValueError(f"class {cls} is not a row of this curve (rows: {self.classes}).")
        r = self.classes.index(cls)
        sl = slice(r, r + 1)
        return ReliabilityCurve(
            self.confidence[sl], self.frequency[sl], self.counts[sl], self.bin_lower[sl], self.bin_upper[sl], [cls],
            self.mode, self.binning,
        )  # fmt: skip

    def to_records(self) -> list[dict]:
        """One dict per (row, bin) with keys ``class, bin, lower, upper, count, confidence, frequency`` (for CSV)."""
        rows = []
        for r in range(self.counts.shape[0]):
            label = "top_label" if self.classes is None else self.classes[r]
            for b in range(self.counts.shape[1]):
                rows.append(
                    {
                        "class": label,
                        "bin": b,
                        "lower": float(self.bin_lower[r, b]),
                        "upper": float(self.bin_upper[r, b]),
                        "count": int(self.counts[r, b]),
                        "confidence": float(self.confidence[r, b]),
                        "frequency": float(self.frequency[r, b]),
                    }
                )
        return rows


def reliability_curve_from_histogram(
    hist: CalibrationHistogram,
    num_bins: int = 10,
    mode: str = "marginal",
    binning: str = "uniform",
    include_background: bool = False,
) -> ReliabilityCurve:
    """Reliability-diagram data of an accumulated histogram; see :func:`reliability_curve`."""
    cnt, hit, sm, lower, upper = hist.bin_statistics(num_bins, mode=mode, binning=binning)
    rows = _rows(hist, mode, include_background)
    cnt, hit, sm, lower, upper = cnt[rows], hit[rows], sm[rows], lower[rows], upper[rows]
    nan = torch.full_like(sm, math.nan)
    den = cnt.double()
    classes = None if mode == "top_label" else list(range(hist.num_classes))[rows]
    return ReliabilityCurve(
        confidence=torch.where(cnt > 0, sm / den.clamp(min=1), nan),
        frequency=torch.where(cnt > 0, hit.double() / den.clamp(min=1), nan),
        counts=cnt,
        bin_lower=lower,
        bin_upper=upper,
        classes=classes,
        mode=mode,
        binning=binning,
    )


def reliability_curve(
    probs: torch.Tensor,
    target: torch.Tensor,
    num_bins: int = 10,
    mode: str = "marginal",
    binning: str = "uniform",
    include_background: bool = False,
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
    check_sum: bool = True,
) -> ReliabilityCurve:
    """Per-bin mean confidence, observed frequency and count: the data of a reliability diagram.

    The paper's figures use 10 uniform bins of the foreground probability (binary task, ``include_background=False``).
    ``frequency`` against ``confidence`` is scikit-learn's ``calibration_curve(y, p, n_bins, strategy="uniform")``
    (which drops empty bins where we keep them as NaN).

    Args:
        probs, target, mask, ignore_index, check_sum, mode, binning, include_background: as for
            :func:`calibration_error`.
        num_bins: number of bins (10 in the paper's figures).

    Returns:
        a :class:`ReliabilityCurve`.

    Example:
        >>> probs = torch.tensor([0.125, 0.875, 0.75, 0.25]).view(1, 1, 4)
        >>> rc = reliability_curve(probs, torch.tensor([0, 1, 1, 1]).view(1, 1, 4))
        >>> rc.counts[0].tolist(), rc.frequency[0, 7].item()
        ([0, 1, 1, 0, 0, 0, 0, 1, 1, 0], 1.0)
    """
    h = _histogram_for(probs, target, mask, _sub_bins(num_bins, binning), ignore_index, check_sum)
    return reliability_curve_from_histogram(h, num_bins, mode, binning, include_background)
