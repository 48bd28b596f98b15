"""Fixtures of the data tests: tiny phantoms (generated once per session) and hand-written real layouts."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from monai_meep.apps.phantoms import generate_la_phantom, generate_wmh_phantom

SCALE = 0.2


@pytest.fixture(scope="session")
def wmh_phantom(tmp_path_factory) -> Path:
    return generate_wmh_phantom(tmp_path_factory.mktemp("wmh") / "root", num_subjects=6, seed=3, scale=SCALE)


@pytest.fixture(scope="session")
def la_phantom(tmp_path_factory) -> Path:
    return generate_la_phantom(tmp_path_factory.mktemp("la") / "root", num_subjects=6, seed=3, scale=SCALE)


def write_nifti(path: Path, data: np.ndarray, spacing=(0.96, 0.96, 3.0), dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), np.diag([*spacing, 1.0])), str(path))
    return path


def make_wmh_tree(
    root: Path, sites=("Utrecht", "Singapore", "Amsterdam/GE3T"), per_site=2, shape=(12, 10, 6), seed=0
) -> Path:
    """A small WMH challenge tree: FLAIR = 100 + noise, T1 = -100 + noise (so channel order is testable)."""
    rng = np.random.default_rng(seed)
    sid = 0
    for site in sites:
        for _ in range(per_site):
            subj = root / site / str(sid)
            write_nifti(subj / "pre" / "FLAIR.nii.gz", 100 + rng.normal(0, 5, shape))
            write_nifti(subj / "pre" / "T1.nii.gz", -100 + rng.normal(0, 2, shape))
            label = np.zeros(shape, np.uint8)
            label[4:7, 3:6, 2:4] = 1
            label[0:2, 0:2, 0:1] = 2
            write_nifti(subj / "wmh.nii.gz", label, dtype=np.uint8)
            sid += 1
    return root


def make_uamt_tree(root: Path, n_train=4, n_test=2, shape=(20, 18, 12), seed=0, spacing_attr=False) -> Path:
    """An UA-MT layout without spacing attributes (as the real files)."""
    rng = np.random.default_rng(seed)
    ids = [f"ID{i:02d}ABCDEFGHIJKLMNOP" for i in range(n_train + n_test)]
    for sid in ids:
        (root / sid).mkdir(parents=True, exist_ok=True)
        with h5py.File(root / sid / "mri_norm2.h5", "w") as f:
            f.create_dataset("image", data=rng.normal(0, 1, shape).astype(np.float32))
            lab = np.zeros(shape, np.uint8)
            lab[5:12, 4:10, 3:8] = 1
            f.create_dataset("label", data=lab)
            if spacing_attr:
                f["image"].attrs["spacing"] = [1.0, 1.0, 1.0]
    (root / "train.list").write_text("\n".join(ids[:n_train]) + "\n")
    (root / "test.list").write_text("\n".join(ids[n_train:]) + "\n")
    return root


def make_decathlon_tree(root: Path, n=5, shape=(16, 16, 10), seed=0) -> Path:
    """A Decathlon Task02_Heart layout (1.25 x 1.25 x 1.37 mm), including macOS '._' junk files."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        name = f"la_{i:03d}.nii.gz"
        write_nifti(root / "imagesTr" / name, rng.normal(500, 50, shape), spacing=(1.25, 1.25, 1.37))
        lab = np.zeros(shape, np.uint8)
        lab[4:9, 4:9, 3:6] = 1
        write_nifti(root / "labelsTr" / name, lab, spacing=(1.25, 1.25, 1.37), dtype=np.uint8)
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "imagesTr" / "._la_000.nii.gz").write_bytes(b"junk")
    (root / "dataset.json").write_text(
        json.dumps({"name": "LeftAtrium", "numTraining": n, "training": entries, "test": []})
    )
    return root
