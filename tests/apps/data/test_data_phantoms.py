"""Phantoms: layout, determinism (same seed, same bytes), geometry, label values and basic contrast."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from monai_meep.apps.phantoms import generate_la_phantom, generate_wmh_phantom
from monai_meep.apps.phantoms.__main__ import main as phantom_cli
from monai_meep.apps.phantoms.wmh import wmh_phantom_shape

from .conftest import SCALE


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_wmh_layout_geometry_and_labels(wmh_phantom):
    flairs = sorted(wmh_phantom.rglob("pre/FLAIR.nii.gz"))
    assert len(flairs) == 6
    assert {p.parent.parent.parent.name for p in flairs} == {"Utrecht", "Singapore", "GE3T"}
    for flair in flairs:
        subj = flair.parent.parent
        imgs = [nib.load(str(p)) for p in (flair, subj / "pre" / "T1.nii.gz", subj / "wmh.nii.gz")]
        assert all(i.shape == wmh_phantom_shape(SCALE) for i in imgs)
        np.testing.assert_allclose(imgs[0].header.get_zooms(), np.array([1, 1, 3]) / SCALE, rtol=1e-6)
        for i in imgs[1:]:
            np.testing.assert_allclose(i.affine, imgs[0].affine)
        lab = np.asarray(imgs[2].dataobj)
        assert set(np.unique(lab).tolist()) <= {0, 1, 2}


def test_wmh_lesions_are_bright_in_flair_dark_in_t1(wmh_phantom):
    # Pooled over subjects: annotated lesions are hyperintense on FLAIR, hypointense on T1, relative to the brain.
    ratios_f, ratios_t = [], []
    for subj in sorted(p.parent.parent for p in wmh_phantom.rglob("pre/FLAIR.nii.gz")):
        lab = np.asarray(nib.load(str(subj / "wmh.nii.gz")).dataobj)
        flair = np.asarray(nib.load(str(subj / "pre" / "FLAIR.nii.gz")).dataobj, dtype=np.float64)
        t1 = np.asarray(nib.load(str(subj / "pre" / "T1.nii.gz")).dataobj, dtype=np.float64)
        brain = flair > 0.5 * np.percentile(flair, 90)
        if (lab == 1).sum() == 0:
            continue
        ratios_f.append(flair[lab == 1].mean() / flair[brain & (lab == 0)].mean())
        wm_t1 = np.median(t1[brain & (lab == 0) & (t1 > np.median(t1[brain]))])  # white matter is bright on T1
        ratios_t.append(np.median(t1[lab == 1]) / wm_t1)
    assert ratios_f, "no subject has a lesion"
    assert np.median(ratios_f) > 1.05
    assert np.median(ratios_t) < 1.0


def test_wmh_determinism_and_subject_independence(tmp_path):
    a = generate_wmh_phantom(tmp_path / "a", num_subjects=2, seed=5, scale=SCALE)
    b = generate_wmh_phantom(tmp_path / "b", num_subjects=2, seed=5, scale=SCALE)
    c = generate_wmh_phantom(tmp_path / "c", num_subjects=1, seed=5, scale=SCALE)
    d = generate_wmh_phantom(tmp_path / "d", num_subjects=1, seed=6, scale=SCALE)
    da, dc = _digest(a), _digest(c)
    assert da == _digest(b)
    assert all(da[k] == v for k, v in dc.items())  # subject 0 does not depend on num_subjects
    assert dc != _digest(d)


def test_la_layout_geometry_and_lists(la_phantom):
    train = (la_phantom / "train.list").read_text().split()
    test = (la_phantom / "test.list").read_text().split()
    assert (len(train), len(test)) == (5, 1)
    assert not set(train) & set(test)
    for sid in train + test:
        assert len(sid) == 20
        with h5py.File(la_phantom / sid / "mri_norm2.h5", "r") as f:
            img, lab = f["image"][()], f["label"][()]
            np.testing.assert_allclose(f["image"].attrs["spacing"], [0.625 / SCALE] * 3)
        assert img.shape == lab.shape and img.dtype == np.float32 and lab.dtype == np.uint8
        assert set(np.unique(lab).tolist()) == {0, 1}
        assert abs(float(img.mean())) < 1e-3 and abs(float(img.std()) - 1) < 1e-3  # z-scored (mri_norm2)
        assert img[lab == 1].mean() > img[lab == 0].mean() + 0.5  # blood pool is bright


def test_la_determinism(tmp_path):
    a = generate_la_phantom(tmp_path / "a", num_subjects=2, seed=1, scale=SCALE)
    b = generate_la_phantom(tmp_path / "b", num_subjects=2, seed=1, scale=SCALE)
    c = generate_la_phantom(tmp_path / "c", num_subjects=2, seed=2, scale=SCALE)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


@pytest.mark.parametrize("task", ["wmh", "la"])
def test_cli_and_figure(tmp_path, task):
    out = tmp_path / task
    args = [task, "--out", str(out), "--subjects", "2", "--seed", "1", "--scale", str(SCALE), "--figure"]
    assert phantom_cli(args) == 0
    png = out / f"phantom_{task}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("gen", [generate_wmh_phantom, generate_la_phantom])
def test_bad_arguments(tmp_path, gen):
    with pytest.raises(ValueError, match="num_subjects"):
        gen(tmp_path, num_subjects=0)
    with pytest.raises(ValueError, match="scale"):
        gen(tmp_path, num_subjects=1, scale=0.0)
