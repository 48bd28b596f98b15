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

- :class:`CalibrationMode`: ``marginal`` (class-wise: one ECE per class on ``p_c`` vs ``y == c``; their mean is
  the class-wise ECE, CECE) or ``top_label`` (arg-max confidence vs correctness, one value).

All are MONAI ``StrEnum`` options read with ``look_up_option``; :func:`region_mask` builds the boolean mask of a
region from a label map, :func:`batch_region_mask` the ``(B, 1, *spatial)`` mask of a batch (per-image spacing), and
:func:`probability_sum_tolerance` the tolerance of a "sums to 1" check for a dtype. The scores themselves are
:func:`monai_meep.metrics.calibration_errors` (one call, per image and pooled) and
:meth:`monai_meep.metrics.ExpectedCalibrationErrorMetric.from_convention` (streaming).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from monai.utils import StrEnum, look_up_option

from monai_meep.utils import check_int

__all__ = [
    "PRESETS",
    "CalibrationConvention",
    "CalibrationMode",
    "Preset",
    "Region",
    "batch_region_mask",
    "calibration_convention",
    "probability_sum_tolerance",
    "region_mask",
]


class Region(StrEnum):
    """Which voxels the calibration metrics score."""

    ALL = "all"
    FOREGROUND = "foreground"
    BOUNDARY = "boundary"


class CalibrationMode(StrEnum):
    """What is binned: each class's probability against its one-hot label, or the arg-max confidence."""

    MARGINAL = "marginal"
    TOP_LABEL = "top_label"


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
    mode: CalibrationMode | str | None = None,
    include_background: bool | None = None,
) -> CalibrationConvention:
    """A preset, with its region / bins / band width / mode / background rule optionally overridden.

    Args:
        preset: ``"meep"``, ``"mbls"`` or ``"monai"``.
        region: ``"all"``, ``"foreground"`` or ``"boundary"`` instead of the preset's.
        num_bins: bins instead of the preset's.
        band_mm: width of the boundary band in mm (default 2).
        mode: ``"marginal"`` (class-wise) or ``"top_label"`` instead of the preset's.
        include_background: report class 0 in marginal mode, instead of the preset's rule.

    Returns:
        The :class:`CalibrationConvention`; its ``name`` is the preset's, with ``+`` and the overrides when any.

    Raises:
        ValueError: unknown preset, region or mode, ``num_bins < 1`` or ``band_mm <= 0``.
        TypeError: ``num_bins`` is not an int, ``include_background`` not a bool.

    Example:
        >>> conv = calibration_convention("mbls", region="boundary", band_mm=3)
        >>> conv.name, str(conv.region), conv.num_bins, conv.mode, conv.band_mm
        ('mbls+region=boundary', 'boundary', 15, 'top_label', 3.0)
        >>> calibration_convention("meep", include_background=True).name
        'meep+include_background=True'
    """
    base = PRESETS[look_up_option(preset, Preset)]
    changes: dict[str, Any] = {}
    if region is not None and look_up_option(region, Region) != base.region:
        changes["region"] = look_up_option(region, Region)
    if num_bins is not None and check_int(num_bins, "num_bins", minimum=1) != base.num_bins:
        changes["num_bins"] = int(num_bins)
    if mode is not None and str(look_up_option(mode, CalibrationMode)) != base.mode:
        changes["mode"] = str(look_up_option(mode, CalibrationMode))  # a plain str, as the presets (report.json)
    if include_background is not None:
        if not isinstance(include_background, (bool, np.bool_)):
            raise TypeError(f"include_background must be a bool, got {include_background!r}.")
        if bool(include_background) != base.include_background:
            changes["include_background"] = bool(include_background)
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


def _index_labels(target: torch.Tensor, num_classes: int) -> np.ndarray:
    """``(B, *spatial)`` int64 class indices of a ``(B, 1, *spatial)`` index map or a ``(B, C, *spatial)`` one-hot."""
    t = target.as_tensor() if hasattr(target, "as_tensor") else target
    t = t.detach()
    if t.shape[1] == num_classes and num_classes > 1:
        return t.argmax(1).cpu().numpy().astype(np.int64)
    return t[:, 0].cpu().numpy().astype(np.int64)


def _metatensor_spacing(target: torch.Tensor, img_dim: int) -> list[tuple[float, ...]] | None:
    """Per-image voxel sizes from a MONAI ``MetaTensor``'s affine (``None`` for a plain tensor)."""
    affine = getattr(target, "affine", None)
    if not isinstance(affine, torch.Tensor):
        return None
    a = affine.detach().cpu().double()
    a = a.expand(target.shape[0], *a.shape[-2:]) if a.ndim == 2 else a
    # column norms of the affine's linear part, as monai.data.utils.affine_to_spacing
    return [tuple(torch.linalg.norm(m[:img_dim, :img_dim], dim=0).tolist()) for m in a]


def batch_region_mask(
    target: torch.Tensor,
    region: Region | str,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | np.ndarray | torch.Tensor | None = None,
    band_mm: float = 2.0,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> torch.Tensor | None:
    """The ``(B, 1, *spatial)`` mask of a region for a batch of labels: :func:`region_mask` per image.

    Args:
        target: ``(B, 1, *spatial)`` class indices or ``(B, C, *spatial)`` one-hot (a MONAI ``MetaTensor`` too).
        region: ``"all"`` (returns ``None``), ``"foreground"`` or ``"boundary"``.
        spacing: voxel size in mm for ``"boundary"``: a number, one value per spatial axis, or one such sequence
            per image (MONAI's ``HausdorffDistanceMetric`` forms). ``None`` reads it from a ``MetaTensor``'s affine;
            a plain tensor then raises (a band in voxels is not a band in mm: pass ``spacing=1.0`` for that).
        band_mm: width of the boundary band in mm.
        num_classes: classes of the task (default: the channels of a one-hot target, else the largest label + 1).
        ignore_index: a label outside ``[0, num_classes)`` (WMH's 2) counts as background for the region, as in
            :func:`monai_meep.report.score_case` (its voxels are left out of the scores by ``ignore_index``).

    Returns:
        ``None`` for ``"all"``, else a boolean tensor ``(B, 1, *spatial)`` on ``target``'s device.

    Raises:
        TypeError: ``target`` is not a tensor.
        ValueError: ``target`` has fewer than 3 dimensions, unknown region, ``"boundary"`` without a spacing, or a
            spacing of the wrong shape / not positive.

    Example:
        >>> lab = torch.zeros(1, 1, 1, 7, dtype=torch.long); lab[..., 3] = 1
        >>> batch_region_mask(lab, "boundary", spacing=(1.0, 1.0), band_mm=1.0).long().flatten().tolist()
        [0, 0, 1, 1, 1, 0, 0]
    """
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch tensor (B, 1, *spatial), got {type(target).__name__}.")
    if target.ndim < 3:
        raise ValueError(f"target must be (B, 1, *spatial) or (B, C, *spatial), got shape {tuple(target.shape)}.")
    region = look_up_option(region, Region)
    if region == Region.ALL:
        return None
    b, img_dim = target.shape[0], target.ndim - 2
    if num_classes is None:
        num_classes = int(target.shape[1]) if target.shape[1] > 1 else None
    labels = _index_labels(target, num_classes or 0)
    if ignore_index is not None and (num_classes is None or ignore_index >= num_classes):
        labels = np.where(labels == ignore_index, 0, labels)
    if region == Region.FOREGROUND:
        out = labels > 0
    else:
        from .distance import spacing_rows  # MONAI's spacing forms, one row per image

        if spacing is None:
            spacing = _metatensor_spacing(target, img_dim)
            if spacing is None:
                raise ValueError(
                    "region='boundary' needs the voxel spacing in mm (spacing=..., or a MetaTensor target with its "
                    "affine); pass spacing=1.0 to measure the band in voxels."
                )
        rows = spacing_rows(spacing, b, img_dim).tolist()
        masks = [region_mask(labels[i], region, tuple(rows[i]), band_mm, num_classes) for i in range(b)]
        out = np.stack(masks).astype(bool)
    return torch.from_numpy(out)[:, None].to(target.device)


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
