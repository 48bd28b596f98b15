"""Real layouts written by hand (WMH challenge, UA-MT h5, Decathlon) round-trip through datalists and transforms."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import torch
from monai.transforms import LoadImaged

from monai_meep.apps.data import LAH5Reader, la_datalist, la_transforms, prepare_dataset, wmh_datalist, wmh_transforms

from .conftest import make_decathlon_tree, make_uamt_tree, make_wmh_tree


def test_wmh_challenge_tree(tmp_path):
    root = make_wmh_tree(tmp_path / "wmh")
    items = wmh_datalist(root)
    assert [(it["site"], it["subject"]) for it in items] == [
        ("Amsterdam/GE3T", "4"),
        ("Amsterdam/GE3T", "5"),
        ("Singapore", "2"),
        ("Singapore", "3"),
        ("Utrecht", "0"),
        ("Utrecht", "1"),
    ]
    it = items[0]
    assert it["image"][0].endswith("pre/FLAIR.nii.gz") and it["image"][1].endswith("pre/T1.nii.gz")
    d = wmh_transforms("eval")(it)
    assert d["image"].shape == (2, 12, 10, 6) and d["label"].shape == (1, 12, 10, 6)
    assert d["image"].dtype == torch.float32
    np.testing.assert_allclose(d["image"].pixdim.numpy(), [0.96, 0.96, 3.0], rtol=1e-6)
    # channel order [FLAIR, T1] and per-channel z-score, against a float64 NumPy recomputation
    for c, path in enumerate(it["image"]):
        raw = np.asarray(nib.load(path).dataobj, dtype=np.float64)
        ref = (raw - raw.mean()) / raw.std()
        np.testing.assert_allclose(d["image"][c].numpy(), ref, atol=1e-4)
    assert set(torch.unique(d["label"]).tolist()) == {0.0, 1.0, 2.0}  # label 2 is kept
    inf = wmh_transforms("infer")({"image": it["image"]})
    assert "label" not in inf and inf["image"].shape == (2, 12, 10, 6)


def test_uamt_h5_reader_defaults_to_0625(tmp_path):
    root = make_uamt_tree(tmp_path / "la")
    items = la_datalist(root)
    assert len(items) == 6 and items[0]["image"] == items[0]["label"] and items[0]["site"] == "utah"
    d = LoadImaged(keys="image", reader=LAH5Reader("image"), image_only=True)({"image": items[0]["image"]})
    np.testing.assert_allclose(d["image"].pixdim.numpy(), [0.625] * 3)
    with h5py.File(items[0]["image"], "r") as f:
        raw, lab = f["image"][()].astype(np.float64), f["label"][()]
    out = la_transforms("eval", crop_size=(16, 16, 8))(items[0])
    assert out["image"].shape == (1, 16, 16, 8) and out["label"].shape == (1, 16, 16, 8)
    ref = ((raw - raw.mean()) / raw.std())[2:18, 1:17, 2:10]  # centre crop of (20, 18, 12)
    np.testing.assert_allclose(out["image"][0].numpy(), ref, atol=1e-4)
    np.testing.assert_array_equal(out["label"][0].numpy(), lab[2:18, 1:17, 2:10])
    np.testing.assert_allclose(out["image"].pixdim.numpy(), [0.625] * 3)


def test_uamt_spacing_attribute_wins(tmp_path):
    root = make_uamt_tree(tmp_path / "la", spacing_attr=True)
    d = LoadImaged(keys="image", reader=LAH5Reader("image"), image_only=True)({"image": la_datalist(root)[0]["image"]})
    np.testing.assert_allclose(d["image"].pixdim.numpy(), [1.0] * 3)


def test_decathlon_layout(tmp_path):
    root = make_decathlon_tree(tmp_path / "Task02_Heart")
    items = la_datalist(root)
    assert [it["subject"] for it in items] == [f"la_{i:03d}" for i in range(5)]  # '._' junk ignored
    out = la_transforms("train", crop_size=(8, 8, 8))(items[1])
    assert out["image"].shape == (1, 8, 8, 8) and out["label"].shape == (1, 8, 8, 8)
    whole = la_transforms("eval", crop_size=(8, 8, 8))(items[1])  # the geometry is read (training drops it)
    np.testing.assert_allclose(whole["image"].pixdim.numpy(), [1.25, 1.25, 1.37], rtol=1e-5)
    dl = prepare_dataset("la", dataset_dir=root, seed=0)
    assert [len(dl[k]) for k in ("training", "validation", "test")] == [3, 1, 1]


def test_phantoms_round_trip(wmh_phantom, la_phantom):
    from monai_meep.apps.data import roi_size_for_scale

    from .conftest import SCALE

    wmh = prepare_dataset("wmh", dataset_dir=wmh_phantom)
    patch = roi_size_for_scale("wmh", SCALE, divisor=8)
    out = wmh_transforms("train", patch_size=patch, num_samples=3)(wmh["training"][0])
    assert len(out) == 3 and all(o["image"].shape == (2, *patch) for o in out)
    whole = wmh_transforms("eval")(wmh["training"][0])
    np.testing.assert_allclose(whole["image"].pixdim.numpy(), [5.0, 5.0, 15.0], rtol=1e-6)
    la = prepare_dataset("la", dataset_dir=la_phantom)
    crop = roi_size_for_scale("la", SCALE, divisor=8)
    out = la_transforms("train", crop_size=crop)(la["training"][0])
    assert out["image"].shape == (1, *crop) and out["label"].shape == (1, *crop)
    whole = la_transforms("eval", crop_size=crop)(la["training"][0])
    np.testing.assert_allclose(whole["image"].pixdim.numpy(), [0.625 / SCALE] * 3, rtol=1e-6)
