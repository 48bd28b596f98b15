"""Every error case: missing file, unreadable volume, shape / affine mismatch, empty data set, unknown layout."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from monai_meep.apps.data import la_datalist, la_transforms, prepare_dataset, wmh_datalist, wmh_transforms
from monai_meep.apps.data.datasets import load_datalist_file

from .conftest import make_decathlon_tree, make_uamt_tree, make_wmh_tree, write_nifti


def test_wmh_missing_file(tmp_path):
    root = make_wmh_tree(tmp_path / "w")
    missing = root / "Utrecht" / "0" / "pre" / "T1.nii.gz"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        wmh_datalist(root)
    (root / "Singapore" / "2" / "wmh.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="wmh.nii.gz"):
        prepare_dataset("wmh", root)


def test_wmh_unreadable_volume(tmp_path):
    root = make_wmh_tree(tmp_path / "w")
    bad = root / "Utrecht" / "1" / "pre" / "FLAIR.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    with pytest.raises(ValueError, match=f"Cannot read {bad}"):
        wmh_datalist(root)


def test_wmh_shape_and_affine_mismatch(tmp_path):
    root = make_wmh_tree(tmp_path / "w")
    t1 = root / "Utrecht" / "0" / "pre" / "T1.nii.gz"
    write_nifti(t1, np.zeros((12, 10, 5)))
    with pytest.raises(ValueError, match=r"Shape mismatch.*T1\.nii\.gz"):
        wmh_datalist(root)
    write_nifti(t1, np.zeros((12, 10, 6)), spacing=(1.0, 1.0, 3.0))
    with pytest.raises(ValueError, match=r"Affine mismatch.*T1\.nii\.gz"):
        wmh_datalist(root)


def test_wmh_empty_and_wrong_layout(tmp_path):
    (tmp_path / "w" / "Utrecht").mkdir(parents=True)
    with pytest.raises(ValueError, match="Empty WMH data set"):
        wmh_datalist(tmp_path / "w")
    with pytest.raises(ValueError, match="matches no WMH layout.*pre/FLAIR.nii.gz"):
        prepare_dataset("wmh", tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        wmh_datalist(tmp_path / "nowhere")


def test_la_missing_listed_subject(tmp_path):
    root = make_uamt_tree(tmp_path / "la")
    (root / "test.list").write_text((root / "test.list").read_text() + "GHOST\n")
    with pytest.raises(FileNotFoundError, match="GHOST/mri_norm2.h5"):
        la_datalist(root)


def test_la_unreadable_and_bad_h5(tmp_path):
    root = make_uamt_tree(tmp_path / "la")
    sid = (root / "train.list").read_text().split()[0]
    path = root / sid / "mri_norm2.h5"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"Cannot read {path}"):
        la_datalist(root)
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="no dataset 'label'"):
        la_datalist(root)
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=np.zeros((4, 4, 4), np.float32))
        f.create_dataset("label", data=np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="Shape mismatch"):
        la_datalist(root)
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=np.zeros((4, 4, 4), np.float32))
    with pytest.raises(RuntimeError) as info:  # MONAI wraps transform errors; the cause names the file
        la_transforms("eval", (4, 4, 4))({"image": str(path), "label": str(path)})
    assert "no dataset 'label'" in str(info.value.__cause__) and str(path) in str(info.value.__cause__)


def test_la_empty_and_wrong_layout(tmp_path):
    root = make_uamt_tree(tmp_path / "la")
    (root / "train.list").write_text("")
    (root / "test.list").write_text("\n")
    with pytest.raises(ValueError, match="Empty LA data set"):
        la_datalist(root)
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="matches no LA layout.*train.list.*dataset.json"):
        prepare_dataset("la", other)


def test_decathlon_missing_and_mismatch(tmp_path):
    root = make_decathlon_tree(tmp_path / "d")
    lab = root / "labelsTr" / "la_002.nii.gz"
    write_nifti(lab, np.zeros((16, 16, 10)), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="Affine mismatch.*la_002"):
        la_datalist(root)
    lab.unlink()
    with pytest.raises(FileNotFoundError, match="la_002.nii.gz"):
        la_datalist(root)
    (root / "dataset.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError, match="training"):
        la_datalist(root)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="task"):
        prepare_dataset("brain")
    with pytest.raises(ValueError, match="split"):
        prepare_dataset("wmh", split="kfold")
    with pytest.raises(ValueError, match="WMH only"):
        prepare_dataset("la", split="loso")
    with pytest.raises(ValueError, match="mode"):
        wmh_transforms("test")
    with pytest.raises(ValueError, match="crop_size"):
        la_transforms("train", crop_size=(8, 8))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty and holds no phantom.json"):
        prepare_dataset("la", None, tmp_path / "full", num_subjects=3, scale=0.15)


def test_datalist_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match="not a monai_meep datalist"):
        load_datalist_file(bad)
    root = make_wmh_tree(tmp_path / "w", per_site=2)
    rec = tmp_path / "rec.json"
    prepare_dataset("wmh", root, datalist_file=rec)
    (root / "Utrecht" / "0" / "wmh.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="named by the datalist file"):
        prepare_dataset("wmh", root, datalist_file=rec)
