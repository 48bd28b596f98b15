"""Bad data never passes silently: label values, missing ``pre/`` folders, duplicate or escaping list entries,
truncated volumes. Each case raises a clear error naming the file or subject (issue 14)."""

from __future__ import annotations

import gzip
import json

import h5py
import numpy as np
import pytest

from monai_meep.apps.data import la_datalist, la_transforms, prepare_dataset, wmh_datalist, wmh_transforms
from monai_meep.apps.data.transforms import CheckLabelValuesd

from .conftest import make_decathlon_tree, make_uamt_tree, make_wmh_tree, write_nifti


def _cause(info: pytest.ExceptionInfo) -> BaseException:
    """MONAI's ``Compose`` wraps a transform's error in a RuntimeError; the cause is ours."""
    err = info.value
    while isinstance(err, RuntimeError) and err.__cause__ is not None:
        err = err.__cause__
    return err


def _first_la(root):
    sid = (root / "train.list").read_text().split()[0]
    return root / sid / "mri_norm2.h5"


@pytest.mark.parametrize("values, bad", [((0.0, 0.5), "0.5"), ((0, 7), "7")])
def test_la_label_values_checked_at_load(tmp_path, values, bad):
    root = make_uamt_tree(tmp_path / "la")
    path = _first_la(root)
    with h5py.File(path, "r+") as f:
        lab = np.zeros(f["label"].shape, np.float32)
        lab[:3] = values[1]
        del f["label"]
        f.create_dataset("label", data=lab)
    for mode in ("train", "eval"):
        with pytest.raises(RuntimeError) as info:
            la_transforms(mode, (8, 8, 8))({"image": str(path), "label": str(path)})
        err = _cause(info)
        assert isinstance(err, ValueError)
        assert str(path) in str(err) and bad in str(err) and "{0, 1}" in str(err)


def test_wmh_label_values_checked_at_load(tmp_path):
    root = make_wmh_tree(tmp_path / "w", per_site=1)
    items = wmh_datalist(root)
    good = wmh_transforms("eval")(items[0])  # 0, 1 and 2 are all WMH labels
    assert set(np.unique(good["label"].numpy()).tolist()) == {0.0, 1.0, 2.0}
    lab = np.zeros((12, 10, 6), np.uint8)
    lab[0, 0, 0] = 3
    write_nifti(root / "Utrecht" / "0" / "wmh.nii.gz", lab, dtype=np.uint8)
    with pytest.raises(RuntimeError) as info:
        wmh_transforms("eval")(wmh_datalist(root)[-1])
    err = _cause(info)
    assert isinstance(err, ValueError) and "wmh.nii.gz" in str(err) and "3" in str(err)


def test_check_label_values_transform():
    import torch

    t = CheckLabelValuesd("label", (0, 1))
    d = {"label": torch.tensor([[0.0, 1.0, 1.0]])}
    assert t(d) is not None
    with pytest.raises(ValueError, match="label values"):
        t({"label": torch.tensor([[0.0, float("nan")]])})
    with pytest.raises(ValueError, match="allowed_values"):
        CheckLabelValuesd("label", ())


def test_wmh_subject_without_pre_folder(tmp_path):
    root = make_wmh_tree(tmp_path / "w")
    import shutil

    shutil.rmtree(root / "Singapore" / "2" / "pre")
    with pytest.raises(FileNotFoundError, match=r"Singapore/2.*pre"):
        wmh_datalist(root)
    with pytest.raises(FileNotFoundError, match=r"Singapore/2"):
        prepare_dataset("wmh", root)


def test_la_duplicate_ids(tmp_path):
    root = make_uamt_tree(tmp_path / "la")
    train = (root / "train.list").read_text().split()
    (root / "train.list").write_text("\n".join([*train, train[0]]) + "\n")
    with pytest.raises(ValueError, match=f"{train[0]}.*twice.*train.list"):
        la_datalist(root)
    test = (root / "test.list").read_text().split()
    (root / "train.list").write_text("\n".join([*train, test[0]]) + "\n")
    with pytest.raises(ValueError, match=f"{test[0]}.*both train.list and test.list"):
        la_datalist(root)
    with pytest.raises(ValueError, match=test[0]):
        prepare_dataset("la", root)


def test_decathlon_duplicate_entries(tmp_path):
    root = make_decathlon_tree(tmp_path / "d")
    doc = json.loads((root / "dataset.json").read_text())
    doc["training"].append(doc["training"][0])
    (root / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="la_000.*twice"):
        la_datalist(root)


@pytest.mark.parametrize("entry", ["../../x", "/etc", "a/../../b"])
def test_la_list_entries_confined_to_root(tmp_path, entry):
    root = make_uamt_tree(tmp_path / "la")
    outside = tmp_path / "x"
    outside.mkdir()
    (root / "train.list").write_text((root / "train.list").read_text() + entry + "\n")
    with pytest.raises(ValueError, match=r"train.list.*outside the data root"):
        la_datalist(root)


def test_decathlon_entries_confined_to_root(tmp_path):
    root = make_decathlon_tree(tmp_path / "d")
    doc = json.loads((root / "dataset.json").read_text())
    doc["training"][0]["label"] = "../../../etc/passwd"
    (root / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="dataset.json.*outside the data root"):
        la_datalist(root)


def test_datalist_file_entries_confined_to_root(tmp_path):
    root = make_wmh_tree(tmp_path / "w", per_site=2)
    rec = tmp_path / "rec.json"
    prepare_dataset("wmh", root, datalist_file=rec)
    doc = json.loads(rec.read_text())
    doc["test"][0]["label"] = "../../outside.nii.gz"
    rec.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="outside the data root"):
        prepare_dataset("wmh", root, datalist_file=rec)


def test_truncated_nifti_named_at_load(tmp_path):
    root = make_wmh_tree(tmp_path / "w", per_site=1)
    t1 = root / "Utrecht" / "0" / "pre" / "T1.nii.gz"
    raw = t1.read_bytes()
    t1.write_bytes(raw[: len(raw) // 2])  # a copy killed half-way: the header still reads
    item = next(it for it in wmh_datalist(root) if it["site"] == "Utrecht")  # the header check passes
    with pytest.raises(RuntimeError) as info:
        wmh_transforms("eval")(item)
    err = _cause(info)
    assert isinstance(err, ValueError) and str(t1) in str(err) and "FLAIR" not in str(err)


def test_truncated_nifti_found_by_full_check(tmp_path):
    root = make_wmh_tree(tmp_path / "w", per_site=1)
    flair = root / "Singapore" / "1" / "pre" / "FLAIR.nii.gz"
    data = gzip.decompress(flair.read_bytes())
    flair.write_bytes(gzip.compress(data[: len(data) - 200]))  # a complete gzip of a short NIfTI
    wmh_datalist(root)  # headers only: passes
    with pytest.raises(ValueError, match=f"Cannot read {flair}"):
        wmh_datalist(root, check="full")
    with pytest.raises(ValueError, match="check"):
        wmh_datalist(root, check="everything")


@pytest.mark.parametrize("task", ["la", "wmh"])
def test_negative_phantom_seed_refused_before_any_folder(tmp_path, task):
    from monai_meep.apps.phantoms import generate_la_phantom, generate_wmh_phantom

    gen = generate_la_phantom if task == "la" else generate_wmh_phantom
    out = tmp_path / "phantom"
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        gen(out, num_subjects=1, seed=-1, scale=0.2)
    assert not out.exists()
