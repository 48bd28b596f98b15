# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Tiny synthetic prediction / label folders in each layout the report reads, written by the tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (10, 9, 8)
SPACING = (1.5, 1.0, 2.0)
AFFINE = np.diag([*SPACING, 1.0])


def make_case(rng: np.random.Generator, num_classes: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (C, *shape) float32, label (*shape) uint8)``: boxes of classes 1.., softmax of noisy logits."""
    label = np.zeros(shape, dtype=np.uint8)
    for c in range(1, num_classes):
        lo = rng.integers(1, 4, size=3)
        hi = lo + rng.integers(3, 5, size=3)
        label[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = c
    logits = 3.0 * (np.arange(num_classes)[:, None, None, None] == label[None]) + rng.normal(
        0, 1.5, (num_classes, *shape)
    )
    e = np.exp(logits - logits.max(0))
    return (e / e.sum(0)).astype(np.float32), label


def make_cases(seed: int, n: int, num_classes: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {f"case_{seed}{i:02d}": make_case(rng, num_classes) for i in range(n)}


def save_nifti(path: Path, arr: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    nib.save(nib.Nifti1Image(arr, affine), str(path))


def write_layout(root: Path, cases: dict, layout: str) -> tuple[Path, Path, dict]:
    """Write ``cases`` as ``layout``; returns ``(pred_dir, label_dir, calibration_report kwargs)``.

    Layouts: ``nifti`` (one channel-last 4-D file), ``nifti_fg`` (3-D foreground probability, binary only),
    ``per_class`` (one 3-D file per class, ``_0000`` suffixes), ``npz`` (nnU-Net: ``probabilities``, (C, z, y, x);
    NIfTI labels), ``npy`` (channel-first .npy with .npy labels, no geometry).
    """
    pred, lab = root / "pred", root / "label"
    pred.mkdir(parents=True, exist_ok=True)
    lab.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {}
    for case, (p, y) in cases.items():
        if layout == "npy":
            np.save(pred / f"{case}.npy", p)
            np.save(lab / f"{case}.npy", y)
            kwargs = {"spacing": SPACING}
            continue
        save_nifti(lab / f"{case}.nii.gz", y)
        if layout == "nifti":
            save_nifti(pred / f"{case}.nii.gz", np.moveaxis(p, 0, -1))
        elif layout == "nifti_fg":
            save_nifti(pred / f"{case}_prob.nii.gz", p[1])
            kwargs = {"pred_pattern": r"(?P<case>.+)_prob"}
        elif layout == "per_class":
            for c in range(p.shape[0]):
                save_nifti(pred / f"{case}_{c:04d}.nii.gz", p[c])
            kwargs = {"pred_pattern": r"(?P<case>.+)_(?P<cls>\d{4})"}
        elif layout == "npz":
            np.savez_compressed(pred / f"{case}.npz", probabilities=p.transpose(0, 3, 2, 1))
            save_nifti(pred / f"{case}.nii.gz", p.argmax(0).astype(np.uint8))  # nnU-Net's segmentation beside it
            kwargs = {"pred_glob": "*.npz"}
        else:
            raise ValueError(layout)
    return pred, lab, kwargs


@pytest.fixture
def binary_cases():
    return make_cases(1, 3, 2)


@pytest.fixture
def multi_cases():
    return make_cases(2, 3, 3)
