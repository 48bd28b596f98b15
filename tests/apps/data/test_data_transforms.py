"""Transforms: ROI sizes for a scale, WMH patch sampling (pos_prob, label 2 never a centre), LA crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_meep.apps.data import la_transforms, roi_size_for_scale, wmh_transforms

from .conftest import make_wmh_tree, write_nifti


def test_roi_size_for_scale():
    assert roi_size_for_scale("wmh", 1.0) == (64, 64, 64)
    assert roi_size_for_scale("la", 1.0) == (144, 144, 80)
    assert roi_size_for_scale("la", 0.3) == (48, 48, 32)
    assert roi_size_for_scale("la", 0.3, divisor=8) == (40, 40, 24)
    assert roi_size_for_scale("wmh", 0.1) == (16, 16, 16)
    with pytest.raises(ValueError):
        roi_size_for_scale("la", 0.0)


def _lesion_volume(tmp_path, shape=(40, 40, 12)):
    root = make_wmh_tree(tmp_path / "w", sites=("A",), per_site=1, shape=shape)
    subj = root / "A" / "0"
    label = np.zeros(shape, np.uint8)
    label[5:8, 5:8, 2:4] = 1  # a small lesion
    label[20:36, 20:36, 2:10] = 2  # a large "other pathology" region
    write_nifti(subj / "wmh.nii.gz", label, dtype=np.uint8)
    return {
        "image": [str(subj / "pre" / "FLAIR.nii.gz"), str(subj / "pre" / "T1.nii.gz")],
        "label": str(subj / "wmh.nii.gz"),
    }, label


@pytest.mark.parametrize("pos_prob", [1.0, 0.0])
def test_wmh_patch_centres(tmp_path, pos_prob):
    item, label = _lesion_volume(tmp_path)
    t = wmh_transforms("train", patch_size=(9, 9, 5), num_samples=6, pos_prob=pos_prob)
    t.set_random_state(0)
    patches = t(item)
    assert len(patches) == 6
    for p in patches:
        assert p["image"].shape == (2, 9, 9, 5) and p["label"].shape == (1, 9, 9, 5)
        centre = int(p["label"][0, 4, 4, 2])
        assert centre == (1 if pos_prob == 1.0 else 0)  # never centred on label 2
        # the patch really comes from the volume (undo a possible left-right flip via the affine in the meta)
        assert p["image"].dtype == torch.float32


def test_wmh_pads_thin_volumes(tmp_path):
    item, _ = _lesion_volume(tmp_path, shape=(40, 40, 12))
    patches = wmh_transforms("train", patch_size=(16, 16, 16), num_samples=2)(item)
    assert all(p["image"].shape == (2, 16, 16, 16) for p in patches)
    assert all(type(p["image"]) is torch.Tensor for p in patches)  # training patches carry no meta
    whole = wmh_transforms("eval")(item)  # evaluation keeps the geometry, for HD in mm
    np.testing.assert_allclose(whole["image"].pixdim.numpy(), [0.96, 0.96, 3.0], rtol=1e-6)


def test_la_train_eval_infer(tmp_path):
    from monai_meep.apps.data import la_datalist

    from .conftest import make_uamt_tree

    it = la_datalist(make_uamt_tree(tmp_path / "la", shape=(20, 18, 12)))[0]
    tr = la_transforms("train", crop_size=(24, 16, 8))
    tr.set_random_state(1)
    out = tr(it)
    assert out["image"].shape == (1, 24, 16, 8) and out["label"].shape == (1, 24, 16, 8)  # padded in x, cropped
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
    inf = la_transforms("infer")({"image": it["image"]})
    assert inf["image"].shape == (1, 20, 18, 12) and "label" not in inf
    assert abs(float(inf["image"].mean())) < 1e-5 and abs(float(inf["image"].std(unbiased=False)) - 1) < 1e-4
