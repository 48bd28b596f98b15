# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Calibration error in the field's conventions, per image (macro) and pooled (micro), in one call.

:func:`calibration_errors` scores a batch under a preset of :mod:`monai_meep.metrics.conventions` (``"meep"``,
``"mbls"``, ``"monai"``) or any override of one: which voxels (all / ground-truth foreground / a boundary band in
mm), class-wise (CECE) or top-label, background in or out. It is a thin layer over
:meth:`ExpectedCalibrationErrorMetric.from_convention`, i.e. over the exact :class:`CalibrationHistogram`: the
per-image values and the pooled value come from the same histograms. For data that does not fit in one batch, use
the metric class itself (``metric(y_pred, y, spacing=...)`` per batch, then ``aggregate()`` /
``aggregate(pooled=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .calibration import CALIBRATION_NORMS
from .calibration_metric import ExpectedCalibrationErrorMetric, reduce_metric_table
from .conventions import CalibrationConvention, CalibrationMode, Preset, Region, calibration_convention
from .histogram import CalibrationHistogram

__all__ = ["CalibrationErrors", "calibration_errors"]


@dataclass(frozen=True)
class CalibrationErrors:
    """The calibration error of a batch under one convention, per image and pooled.

    Attributes:
        per_image: float64 ``(B, K)``: one row per image, one column per reported class (marginal mode: classes
            ``classes``) or a single column (top-label). NaN where an image has no voxel in the region.
        pooled: float64 ``(K,)``: the same over every scored voxel of every image at once.
        macro: float64 0-dim: ``per_image`` averaged over the classes, then over the images (MONAI's
            ``reduction="mean"`` order, NaNs skipped; NaN if every value is NaN). For the ``meep`` preset this is the
            paper's mean over volumes; in marginal mode with several classes, the mean class-wise ECE (CECE).
        micro: float64 0-dim: ``pooled`` averaged over the classes (the dataset-level CECE, or the pooled top-label
            ECE).
        classes: the class index of each column (marginal), ``None`` for top-label.
        convention: the convention scored (its ``describe()`` is a report's header line).
        norm: ``"l1"`` (ECE), ``"l2"``, ``"max"`` (MCE) or ``"average"`` (ACE).
        histogram: the pooled :class:`CalibrationHistogram` (reliability curves, other metrics, merging).
    """

    per_image: torch.Tensor
    pooled: torch.Tensor
    macro: torch.Tensor
    micro: torch.Tensor
    classes: list[int] | None
    convention: CalibrationConvention
    norm: str
    histogram: CalibrationHistogram


def _mean(table: torch.Tensor) -> torch.Tensor:
    value, not_nans = reduce_metric_table(table, "mean")
    return value[0] if float(not_nans) > 0 else torch.tensor(math.nan, dtype=table.dtype, device=table.device)


def calibration_errors(
    probs: torch.Tensor,
    target: torch.Tensor,
    convention: CalibrationConvention | Preset | str = Preset.MEEP,
    spacing: Any = None,
    region: Region | str | None = None,
    num_bins: int | None = None,
    band_mm: float | None = None,
    mode: CalibrationMode | str | None = None,
    include_background: bool | None = None,
    norm: str = "l1",
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
    check_sum: bool = True,
) -> CalibrationErrors:
    """Calibration error of a batch in a named convention, per image (macro) and pooled (micro).

    The conventions (``docs/baselines.md``, "Metric conventions and presets"):

    - ``"meep"``: class-wise (marginal) ECE of each foreground class's probability, all voxels, 15 uniform bins,
      per volume then mean (the MEEP paper; binary: the foreground probability);
    - ``"mbls"``: top-label ECE (arg-max confidence vs correctness) over the ground-truth foreground voxels, 15
      bins, per image then mean (MbLS / NACL / SVLS, ``Bala93/MarginLoss``);
    - ``"monai"``: class-wise ECE per (image, class), background included, all voxels, 20 bins, mean over classes
      then images (MONAI 1.6 ``CalibrationErrorMetric()``'s defaults; the pooled value is cai4cai's dataset ECE).

    Args:
        probs: ``(B, C, *spatial)`` probabilities (softmax), or ``(B, 1, *spatial)`` sigmoid foreground probability.
        target: ``(B, 1, *spatial)`` class indices or ``(B, C, *spatial)`` one-hot (a ``MetaTensor`` too).
        convention: a preset name or a :class:`CalibrationConvention`.
        spacing: voxel size in mm for ``region="boundary"``: a number, one value per spatial axis or one row per
            image; ``None`` reads it from a ``MetaTensor`` target's affine.
        region: ``"all"``, ``"foreground"`` or ``"boundary"`` instead of the preset's.
        num_bins: uniform bins instead of the preset's.
        band_mm: width of the boundary band in mm (default 2).
        mode: ``"marginal"`` (class-wise; CECE is the mean over classes) or ``"top_label"`` instead of the preset's.
        include_background: score class 0 in marginal mode, instead of the preset's rule.
        norm: ``"l1"`` (ECE), ``"l2"`` (RMSCE), ``"max"`` (MCE) or ``"average"`` (ACE, informative under
            ``"monai"``, where true negatives make the ECE tiny).
        mask: optional boolean ``(B, 1, *spatial)``, and-ed with the region.
        ignore_index: label whose voxels are not scored (index targets), e.g. 2 for WMH.
        check_sum: check that multi-channel probabilities sum to 1.

    Returns:
        a :class:`CalibrationErrors`.

    Raises:
        ValueError: unknown preset / region / mode / norm, ``region="boundary"`` without a spacing, bad shapes or
            values (see :meth:`CalibrationHistogram.update`); overrides together with a ``CalibrationConvention``.
        TypeError: ``probs`` or ``target`` is not a tensor, or ``convention`` not a name or convention.

    Example:
        >>> probs = torch.tensor([0.9, 0.9, 0.9, 0.9], dtype=torch.float64).view(2, 1, 1, 2)  # p_fg, 2 images
        >>> target = torch.tensor([1, 1, 0, 0]).view(2, 1, 1, 2)
        >>> errs = calibration_errors(probs, target, "meep")
        >>> [round(v, 6) for v in errs.per_image.flatten().tolist()]  # |0.9 - 1| and |0.9 - 0|
        [0.1, 0.9]
        >>> round(float(errs.macro), 6), round(float(errs.micro), 6)  # mean of the two; pooled: |0.9 - 0.5|
        (0.5, 0.4)
    """
    if not isinstance(probs, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"probs and target must be torch tensors, got {type(probs).__name__} and {type(target).__name__}."
        )
    key = CALIBRATION_NORMS.get(str(norm).lower())
    if key is None:
        raise ValueError(f"norm must be one of {sorted(CALIBRATION_NORMS)}, got {norm!r}.")
    metric = ExpectedCalibrationErrorMetric.from_convention(
        convention, region=region, num_bins=num_bins, band_mm=band_mm, mode=mode,
        include_background=include_background, norm=key, reduction="none", ignore_index=ignore_index,
        check_sum=check_sum,
    )  # fmt: skip
    per_image = metric(probs, target, mask=mask, spacing=spacing)
    hist = metric.pooled_histogram()
    pooled = metric._score(hist)
    conv = (
        convention
        if isinstance(convention, CalibrationConvention)
        else calibration_convention(convention, region, num_bins, band_mm, mode, include_background)
    )
    if metric.mode == CalibrationMode.TOP_LABEL:
        classes = None
    else:
        classes = list(range(0 if metric.include_background else 1, hist.num_classes))
    return CalibrationErrors(
        per_image=per_image,
        pooled=pooled,
        macro=_mean(per_image),
        micro=_mean(pooled[None]),
        classes=classes,
        convention=conv,
        norm=key,
        histogram=hist,
    )
