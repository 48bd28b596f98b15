# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Read one case of a report: its probability maps and label, aligned on one grid and checked.

Layouts read (the file's suffix decides):

- **NIfTI** (``.nii`` / ``.nii.gz``, nibabel): a 3-D file is the foreground probability of a binary task; a 4-D file
  ``(x, y, z, C)`` holds the ``C`` class probabilities on its last axis (the channel-last layout MONAI's
  ``SaveImaged`` writes; a 5-D ``(x, y, z, 1, C)`` vector image is read the same); several 3-D files, one per class,
  are stacked in class order. Spacing and affine come from the header.
- **NumPy** ``.npy`` (one array) or ``.npz`` (the array ``probabilities``, as nnU-Net's ``--save_probabilities``
  writes, else the only array, else ``npz_key``): channel first ``(C, *spatial)``, or ``(*spatial)`` for a binary
  foreground probability. No geometry: the spacing is the label's (NIfTI) or the ``spacing`` given.
- **Labels**: NIfTI or ``.npy`` / ``.npz`` integer class maps (trailing singleton axes dropped).

**Spatial order.** nibabel reads NIfTI as ``(x, y, z)``; nnU-Net's ``.npz`` arrays come from SimpleITK in
``(z, y, x)``. ``order="auto"`` (the default) assumes ``(z, y, x)`` for an ``.npz`` holding ``probabilities`` (and
reverses its spatial axes, so it lines up with a NIfTI label) and ``(x, y, z)`` for everything else; pass
``"xyz"`` / ``"zyx"`` to say otherwise.

Every check raises :class:`CaseError` naming the case, the file and what is wrong: unreadable files, non-float or
non-finite probabilities, values outside [0, 1] (logits, most likely), channels not summing to 1 within the dtype's
tolerance (:func:`~monai_meep.metrics.conventions.probability_sum_tolerance`), labels outside the class set,
mismatched shapes or affines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.utils import optional_import

from monai_meep.metrics.conventions import probability_sum_tolerance

from .pairing import CaseFiles, split_suffix

nib, _has_nib = optional_import("nibabel")

__all__ = ["CaseError", "LoadedCase", "Volume", "load_case", "read_volume"]

NPZ_KEYS = ("probabilities", "probs", "seg", "label")  # tried in this order when an .npz holds several arrays
# affines equal to 1 micrometre (NIfTI stores them in float32: ~1e-5 relative)
AFFINE_ATOL, AFFINE_RTOL = 1e-3, 1e-5


class CaseError(ValueError):
    """A case that cannot be scored; ``case``, ``path`` and ``reason`` say which, where and why."""

    def __init__(self, case: str, path: str, reason: str) -> None:
        super().__init__(f"case {case!r} ({path}): {reason}")
        self.case, self.path, self.reason = case, path, reason


@dataclass
class Volume:
    """An array read from one file (or stacked from several), with its geometry when the format has one."""

    array: np.ndarray
    affine: np.ndarray | None
    spacing: tuple[float, ...] | None
    path: str
    numpy_zyx: bool = False  # an nnU-Net .npz: spatial axes stored (z, y, x)


@dataclass
class LoadedCase:
    """One case ready to score: ``probs`` ``(C', *spatial)`` float (``C' == 1``: binary foreground), ``label``
    ``(*spatial)`` integer, ``spacing`` in mm per axis, ``num_classes`` (``C'``, or 2 for one channel)."""

    files: CaseFiles
    probs: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...]
    spacing_source: str
    num_classes: int


def read_volume(path: str, npz_key: str | None = None) -> Volume:
    """Read one NIfTI / ``.npy`` / ``.npz`` file (see the module docstring); raises ``ValueError`` on a bad one."""
    stem, suffix = split_suffix(path)
    if suffix in (".nii", ".nii.gz"):
        if not _has_nib:
            raise ImportError("reading NIfTI needs nibabel (pip install 'nibabel>=5.0').")
        img = nib.load(path)
        arr = np.asanyarray(img.dataobj)  # the stored dtype (float16 stays float16) unless the header scales it
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        return Volume(arr, np.asarray(img.affine, dtype=np.float64), zooms[: min(3, arr.ndim)], path)
    if suffix == ".npy":
        return Volume(np.load(path, allow_pickle=False), None, None, path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            key = npz_key or (keys[0] if len(keys) == 1 else next((k for k in NPZ_KEYS if k in keys), None))
            if key not in keys:
                raise ValueError(f"the .npz holds arrays {keys}; say which with npz_key (--npz-key).")
            return Volume(np.asarray(z[key]), None, None, path, numpy_zyx=key == "probabilities")
    raise ValueError(f"unsupported file type {Path(path).name!r}.")


def _read(case: str, path: str, npz_key: str | None) -> Volume:
    try:
        return read_volume(path, npz_key)
    except ImportError:
        raise
    except Exception as e:  # nibabel / zipfile / numpy raise many types for a corrupt or truncated file
        raise CaseError(case, path, f"cannot read the file: {type(e).__name__}: {e}") from e


def _channels_first(case: str, vols: Sequence[Volume]) -> tuple[np.ndarray, Volume]:
    """The prediction as ``(C, *spatial)`` (``C == 1``: binary foreground), and the volume whose geometry it has."""
    v = vols[0]
    if len(vols) > 1:  # one 3-D file per class, same grid
        for w in vols[1:]:
            if w.array.shape != v.array.shape:
                raise CaseError(case, w.path, f"per-class file has shape {w.array.shape}, class 0 has {v.array.shape}")
            if v.affine is not None and w.affine is not None and not np.allclose(w.affine, v.affine):
                raise CaseError(case, w.path, "per-class files have different affines")
        return np.stack([w.array for w in vols]), v
    arr = v.array
    if v.affine is None:  # NumPy: channel first already (or no channel axis; resolved against the label)
        return arr, v
    if arr.ndim == 5 and arr.shape[3] == 1:  # (x, y, z, 1, C) vector image
        arr = arr[:, :, :, 0]
    return (np.moveaxis(arr, -1, 0) if arr.ndim == 4 else arr), v


def _check_probs(case: str, path: str, p: np.ndarray) -> None:
    if p.dtype.kind != "f":
        raise CaseError(
            case, path, f"probabilities are stored as {p.dtype}: expected floating point (a hard segmentation?)"
        )
    lo, hi = float(np.min(p)), float(np.max(p))  # NaN propagates, so this also catches NaN / inf
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise CaseError(case, path, "probabilities contain NaN or inf")
    if lo < 0 or hi > 1:
        hint = " (logits? save softmax / sigmoid probabilities)" if lo < -1e-3 or hi > 1 + 1e-3 else ""
        raise CaseError(case, path, f"probabilities lie in [{lo:.6g}, {hi:.6g}], outside [0, 1]{hint}")
    if p.shape[0] > 1:
        tol = probability_sum_tolerance(p.dtype, p.shape[0])
        s = p.sum(0, dtype=np.float64)
        err = float(np.max(np.abs(s - 1.0)))
        if err > tol:
            raise CaseError(
                case,
                path,
                f"the {p.shape[0]} channels sum to [{float(s.min()):.6g}, {float(s.max()):.6g}], not 1 (tolerance "
                f"{tol:.3g} for {p.dtype}): logits, per-channel sigmoids, or the channel axis is not the class axis?",
            )


def _check_label(case: str, path: str, y: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise CaseError(case, path, "label holds non-integer values (a probability map passed as label?)")
    elif y.dtype.kind not in "iub":
        raise CaseError(case, path, f"label has dtype {y.dtype}: expected integer class indices")
    values = np.unique(y)
    allowed = set(range(num_classes)) | ({ignore_index} if ignore_index is not None else set())
    bad = [v.item() for v in values if v not in allowed]
    if bad:
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise CaseError(case, path, f"label values {shown} are outside the class set 0..{num_classes - 1}")
    # int16 holds any class set the histogram takes and costs 2 bytes a voxel
    return y.astype(np.int16, copy=False)


def _zyx(order: str, v: Volume) -> bool:
    if order not in ("auto", "xyz", "zyx"):
        raise ValueError(f"order must be 'auto', 'xyz' or 'zyx', got {order!r}.")
    if v.affine is not None:
        return False  # NIfTI is always (x, y, z)
    return v.numpy_zyx if order == "auto" else order == "zyx"


def load_case(
    files: CaseFiles,
    spacing: Sequence[float] | None = None,
    pred_order: str = "auto",
    label_order: str = "auto",
    npz_key: str | None = None,
    ignore_index: int | None = None,
) -> LoadedCase:
    """Read, align and check one case (runs in the report's reader threads).

    Args:
        files: the case's files (:func:`~monai_meep.report.pairing.pair_cases`).
        spacing: voxel size in mm for cases with no NIfTI file (default 1 mm).
        pred_order, label_order: spatial order of NumPy inputs, ``"auto"`` / ``"xyz"`` / ``"zyx"`` (module
            docstring).
        npz_key: array to read from ``.npz`` files holding several.
        ignore_index: a label value allowed beyond the class set (its voxels are not scored).

    Returns:
        The :class:`LoadedCase`.

    Raises:
        CaseError: any problem with the case (module docstring).
    """
    case = files.case
    vols = [_read(case, p, npz_key) for p in files.pred]
    probs, pv = _channels_first(case, vols)
    lv = _read(case, files.label, npz_key)
    label = lv.array
    while label.ndim > 3 and label.shape[-1] == 1:  # (x, y, z, 1) label volumes
        label = label[..., 0]
    if _zyx(label_order, lv):
        label = label.transpose(tuple(reversed(range(label.ndim))))
    if probs.ndim == label.ndim:
        probs = probs[None]  # one channel: the foreground probability of a binary task
    if probs.ndim != label.ndim + 1:
        raise CaseError(case, pv.path, f"prediction has shape {probs.shape}, label {files.label} has {label.shape}")
    if _zyx(pred_order, pv):
        probs = probs.transpose(0, *reversed(range(1, probs.ndim)))
    if probs.shape[1:] != label.shape:
        raise CaseError(
            case,
            pv.path,
            f"mis-shaped: prediction grid {probs.shape[1:]} (channels {probs.shape[0]}) differs from the label's "
            f"{label.shape} ({files.label}); for NumPy inputs check --pred-order / --label-order",
        )
    if pv.affine is not None and lv.affine is not None:
        if not np.allclose(pv.affine, lv.affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL):
            raise CaseError(
                case,
                pv.path,
                f"mismatched grids: the prediction's affine {np.round(pv.affine, 4).tolist()} differs from the "
                f"label's {np.round(lv.affine, 4).tolist()} ({files.label})",
            )
    _check_probs(case, pv.path, probs)
    num_classes = max(2, probs.shape[0])
    label = _check_label(case, files.label, label, num_classes, ignore_index)
    if lv.spacing is not None:
        sp, src = lv.spacing, "label header"
    elif pv.spacing is not None:
        sp, src = pv.spacing, "prediction header"
    else:
        sp, src = tuple(spacing or (1.0,) * label.ndim), "given" if spacing else "assumed 1 mm"
    if len(sp) != label.ndim:
        raise CaseError(case, files.label, f"spacing {sp} has {len(sp)} values for a {label.ndim}-D volume")
    return LoadedCase(files, probs, label, tuple(float(s) for s in sp), src, num_classes)
