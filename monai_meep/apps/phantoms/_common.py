# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Shared, vectorised building blocks of the phantom generators (noise, bias fields, soft shapes, writers)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "bias_field",
    "rician",
    "smooth_noise",
    "soft_ellipsoid",
    "save_nifti",
    "block_mean",
    "rotation_matrix",
]


def rotation_matrix(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (radians) as a 3 x 3 matrix."""
    ax, ay, az = (float(a) for a in angles_rad)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def bias_field(shape: tuple[int, ...], rng: np.random.Generator, strength: float, degree: int = 2) -> np.ndarray:
    """A smooth multiplicative field ``exp(strength * poly)``: a random low-order polynomial over [-1, 1]^3.

    A polynomial (not an upsampled random grid) keeps the field exactly defined for any grid size, so the same
    subject at a different ``scale`` sees the same field.
    """
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    field = np.zeros(shape, dtype=np.float32)
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            for k in range(degree + 1 - i - j):
                if i + j + k == 0:
                    continue
                c = rng.normal(0.0, 1.0) / (i + j + k)
                term = axes[0][:, None, None] ** i * axes[1][None, :, None] ** j * axes[2][None, None, :] ** k
                field += np.float32(c) * term
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return np.exp(np.float32(strength) * field).astype(np.float32)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise on both channels (Rician; Rayleigh where signal = 0)."""
    n1 = rng.normal(0.0, sigma, size=signal.shape).astype(np.float32)
    n2 = rng.normal(0.0, sigma, size=signal.shape).astype(np.float32)
    return np.sqrt((signal + n1) ** 2 + n2**2).astype(np.float32)


def smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma: float | tuple[float, ...]) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def soft_ellipsoid(
    grid_shape: tuple[int, int, int],
    spacing: np.ndarray,
    centre_vox: np.ndarray,
    radii_mm: np.ndarray,
    rot: np.ndarray,
    rng: np.random.Generator | None = None,
    roughness: float = 0.0,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Partial-volume occupancy of a (rough) ellipsoid, computed only inside its bounding box.

    Returns ``(box, frac)``: the slices of the box in the grid and the fraction of each voxel inside the shape
    (a linear ramp one voxel wide around the surface, i.e. partial volume). ``roughness`` > 0 perturbs the
    radius with smooth noise so lesions are not perfect ellipsoids.
    """
    reach = float(np.max(radii_mm)) * (1.0 + 2.0 * roughness) + 2.0 * float(np.max(spacing))
    lo = np.maximum(np.floor(centre_vox - reach / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(centre_vox + reach / spacing).astype(int) + 1, np.asarray(grid_shape))
    if np.any(hi <= lo):
        return tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), np.float32)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=False))
    coords = [
        ((np.arange(a, b) - c) * s).astype(np.float32) for a, b, c, s in zip(lo, hi, centre_vox, spacing, strict=True)
    ]
    xx, yy, zz = np.meshgrid(*coords, indexing="ij")
    pts = np.stack([xx, yy, zz], axis=-1) @ rot.astype(np.float32)  # into the ellipsoid's own frame
    rnorm = np.sqrt(((pts / radii_mm.astype(np.float32)) ** 2).sum(-1))
    if roughness > 0 and rng is not None:
        rnorm = rnorm * (1.0 + roughness * smooth_noise(rnorm.shape, rng, 1.5))
    # (1 - r) * mean radius approximates the signed distance (mm) to the surface; one voxel of ramp = partial volume
    sdist = (1.0 - rnorm) * float(np.mean(radii_mm))
    frac = np.clip(0.5 + sdist / float(np.mean(spacing)), 0.0, 1.0).astype(np.float32)
    return box, frac


def block_mean(x: np.ndarray, factor: int, axis: int = 2) -> np.ndarray:
    """Average ``factor`` consecutive slices along ``axis`` (a thick-slice acquisition: partial volume in z)."""
    n = x.shape[axis] // factor
    x = np.take(x, np.arange(n * factor), axis=axis)
    shape = x.shape[:axis] + (n, factor) + x.shape[axis + 1 :]
    return x.reshape(shape).mean(axis=axis + 1)


def save_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, dtype: type = np.int16) -> None:
    """Write a NIfTI with every header field set deterministically (same array, same bytes)."""
    import nibabel as nib

    data = np.asarray(array)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    img = nib.Nifti1Image(data.astype(dtype), affine.astype(np.float64))
    hdr = img.header
    hdr.set_data_dtype(dtype)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_slope_inter(1.0, 0.0)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    hdr["descrip"] = b"monai_meep phantom"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
