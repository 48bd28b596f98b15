# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The field's calibration conventions as options: which voxels are scored (regions) and the published presets.

The same predictions give different ECE numbers under the conventions in use (docs/report.md, "What is computed"),
so a report has to say which one it follows. This module names them once, for the report (:mod:`monai_meep.report`)
and any later user:

- :class:`Region`: ``all`` voxels of the volume (the MEEP paper), ``foreground`` (ground-truth foreground only, the
  MbLS / NACL / SVLS convention) or ``boundary`` (voxels within ``band_mm`` of the ground-truth surface);
- :class:`Preset`: ``meep`` (class-wise foreground probability, all voxels, 15 bins, per volume then mean),
  ``mbls`` (top-label, ground-truth foreground, 15 bins, per image), ``monai`` (per (image, class) with the
  background, all voxels, 20 bins: MONAI 1.6 ``CalibrationErrorMetric``'s defaults).

Both are MONAI ``StrEnum`` options read with ``look_up_option``; :func:`region_mask` builds the boolean mask of a
region from a label map, and :func:`probability_sum_tolerance` the tolerance of a "sums to 1" check for a dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from monai.utils import StrEnum, look_up_option

__all__ = [
    "PRESETS",
    "CalibrationConvention",
    "Preset",
    "Region",
    "calibration_convention",
    "probability_sum_tolerance",
    "region_mask",
]


class Region(StrEnum):
    """Which voxels the calibration metrics score."""

    ALL = "all"
    FOREGROUND = "foreground"
    BOUNDARY = "boundary"


class Preset(StrEnum):
    """A published convention: region, bins, binary / top-label mode, background in or out."""

    MEEP = "meep"
    MBLS = "mbls"
    MONAI = "monai"


@dataclass(frozen=True)
class CalibrationConvention:
    """How calibration is scored.

    Attributes:
        name: the preset it comes from (or ``"custom"``).
        region: the voxels scored (:class:`Region`).
        num_bins: uniform bins of ECE / MCE / ACE.
        mode: ``"marginal"`` (one value per class: ``p_c`` vs ``y == c``) or ``"top_label"`` (arg-max confidence vs
            correctness, one value).
        include_background: report class 0 in marginal mode.
        band_mm: width of the ``boundary`` region, in mm.
    """

    name: str
    region: Region
    num_bins: int
    mode: str
    include_background: bool
    band_mm: float = 2.0

    def describe(self) -> str:
        """One line for a report's header."""
        what = "top-label confidence" if self.mode == "top_label" else "class-wise (marginal) probabilities"
        bg = ", background included" if self.include_background and self.mode == "marginal" else ""
        where = {
            Region.ALL: "all voxels",
            Region.FOREGROUND: "ground-truth foreground voxels",
            Region.BOUNDARY: f"voxels within {self.band_mm:g} mm of the ground-truth surface",
        }[self.region]
        return f"preset {self.name}: {what}{bg}, {where}, {self.num_bins} uniform bins, per case then mean"


PRESETS: dict[Preset, CalibrationConvention] = {
    # the MEEP paper: binary foreground probability (class-wise for multi-class), all voxels, 15 bins
    Preset.MEEP: CalibrationConvention("meep", Region.ALL, 15, "marginal", False),
    # MbLS / NACL / SVLS / CRaC: top-label ECE per image over ground-truth foreground voxels, 15 bins
    Preset.MBLS: CalibrationConvention("mbls", Region.FOREGROUND, 15, "top_label", False),
    # MONAI 1.6 CalibrationErrorMetric defaults: per (image, class), background included, all voxels, 20 bins
    Preset.MONAI: CalibrationConvention("monai", Region.ALL, 20, "marginal", True),
}


def calibration_convention(
    preset: Preset | str = Preset.MEEP,
    region: Region | str | None = None,
    num_bins: int | None = None,
    band_mm: float | None = None,
) -> CalibrationConvention:
    """A preset, with its region / bins / band width optionally overridden.

    Args:
        preset: ``"meep"``, ``"mbls"`` or ``"monai"``.
        region: ``"all"``, ``"foreground"`` or ``"boundary"`` instead of the preset's.
        num_bins: bins instead of the preset's.
        band_mm: width of the boundary band in mm (default 2).

    Returns:
        The :class:`CalibrationConvention`; its ``name`` is the preset's, with ``+`` and the overrides when any.

    Raises:
        ValueError: unknown preset or region, ``num_bins < 1`` or ``band_mm <= 0``.

    Example:
        >>> conv = calibration_convention("mbls", region="boundary", band_mm=3)
        >>> conv.name, str(conv.region), conv.num_bins, conv.mode, conv.band_mm
        ('mbls+region=boundary', 'boundary', 15, 'top_label', 3.0)
    """
    base = PRESETS[look_up_option(preset, Preset)]
    changes: dict[str, Any] = {}
    if region is not None and look_up_option(region, Region) != base.region:
        changes["region"] = look_up_option(region, Region)
    if num_bins is not None and int(num_bins) != base.num_bins:
        if int(num_bins) < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
        changes["num_bins"] = int(num_bins)
    if band_mm is not None:
        if not float(band_mm) > 0:
            raise ValueError(f"band_mm must be > 0, got {band_mm}.")
        changes["band_mm"] = float(band_mm)
    name = base.name + "".join(f"+{k}={v}" for k, v in changes.items() if k != "band_mm")
    return replace(base, name=name, **changes)


def _band(fg: np.ndarray, spacing: tuple[float, ...], band_mm: float) -> np.ndarray:
    """Voxels of either side of ``fg``'s surface whose centre lies within ``band_mm`` of a voxel of the other side."""
    from scipy.ndimage import distance_transform_edt

    if not fg.any() or fg.all():
        return np.zeros(fg.shape, dtype=bool)  # no surface: an empty band
    # distance of each background voxel to the nearest foreground voxel, and of each foreground voxel to the nearest
    # background voxel, both in mm (the spacing is anisotropic in most scans)
    outside = distance_transform_edt(~fg, sampling=spacing)
    inside = distance_transform_edt(fg, sampling=spacing)
    return np.where(fg, inside, outside) <= band_mm


def region_mask(
    label: np.ndarray | torch.Tensor,
    region: Region | str,
    spacing: tuple[float, ...] | None = None,
    band_mm: float = 2.0,
    num_classes: int | None = None,
) -> np.ndarray | None:
    """Boolean mask of the voxels a region scores, from a spatial label map of class indices.

    Args:
        label: ``(*spatial)`` integer class indices (0 = background).
        region: ``"all"`` (returns ``None``: no mask), ``"foreground"`` (``label > 0``) or ``"boundary"``: voxels
            within ``band_mm`` of the surface of any foreground class (the union over classes of each class's band;
            distances between voxel centres, in mm, on both sides of the surface).
        spacing: voxel size in mm per axis (default 1 mm).
        band_mm: width of the boundary band.
        num_classes: classes of the task (default: the label's maximum + 1), for the per-class bands.

    Returns:
        ``None`` for ``"all"``, else a boolean NumPy array of the label's shape (empty where there is no surface).

    Raises:
        TypeError: ``label`` is not an array or tensor.
        ValueError: unknown region, a spacing of the wrong length.

    Example:
        >>> lab = np.zeros((1, 7), dtype=int); lab[0, 3] = 1
        >>> region_mask(lab, "boundary", spacing=(1.0, 1.0), band_mm=1.0).astype(int)
        array([[0, 0, 1, 1, 1, 0, 0]])
    """
    if isinstance(label, torch.Tensor):
        label = label.detach().cpu().numpy()
    if not isinstance(label, np.ndarray):
        raise TypeError(f"label must be a NumPy array or torch tensor, got {type(label).__name__}.")
    region = look_up_option(region, Region)
    if region == Region.ALL:
        return None
    if region == Region.FOREGROUND:
        return label > 0
    spacing = tuple(float(s) for s in (spacing or (1.0,) * label.ndim))
    if len(spacing) != label.ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} values for a {label.ndim}-D label.")
    n = int(label.max()) + 1 if num_classes is None else int(num_classes)
    out = np.zeros(label.shape, dtype=bool)
    for c in range(1, n):
        out |= _band(label == c, spacing, float(band_mm))
    return out


def probability_sum_tolerance(dtype: np.dtype | torch.dtype | str, num_classes: int, sum_tol: float = 1e-3) -> float:
    """Tolerance of the check that ``num_classes`` stored probabilities sum to 1, for their storage dtype.

    The one definition of this tolerance (the calibration histogram and the report both use it). Each stored
    probability in [0, 1] is off by at most half a unit in the last place (``eps / 2``), so the sum of ``C`` of them
    by at most ``C * eps / 2``; twice that (``C * eps``) leaves room for a softmax computed in the same precision
    (0.0027 is common for bfloat16, whose ``eps`` is ``2**-7``). Never below ``sum_tol``, so float32 / float64 inputs
    keep the usual check; still far below the error of passing logits.

    Args:
        dtype: a floating NumPy or torch dtype (or its name).
        num_classes: channels that are summed.
        sum_tol: the tolerance for exact dtypes (the metrics' ``sum_tol``).

    Returns:
        The absolute tolerance ``max(sum_tol, num_classes * eps)``.

    Raises:
        TypeError: ``dtype`` is not a floating dtype.

    Example:
        >>> probability_sum_tolerance(np.float32, 3), probability_sum_tolerance(torch.bfloat16, 2)
        (0.001, 0.015625)
    """
    if isinstance(dtype, torch.dtype) or (isinstance(dtype, str) and dtype == "bfloat16"):
        t = dtype if isinstance(dtype, torch.dtype) else torch.bfloat16
        if not t.is_floating_point:
            raise TypeError(f"probabilities must be floating point, got {t}.")
        eps = torch.finfo(t).eps
    else:
        d = np.dtype(dtype)
        if d.kind != "f":
            raise TypeError(f"probabilities must be floating point, got {d}.")
        eps = float(np.finfo(d).eps)
    return max(float(sum_tol), int(num_classes) * eps)
