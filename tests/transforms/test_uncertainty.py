"""PredictiveEntropyd / ForegroundProbabilityd against float64 NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged, SpatialPadd

from monai_meep.transforms import ForegroundProbabilityd, PredictiveEntropyd, predictive_entropy


def _np_entropy(p: np.ndarray) -> np.ndarray:
    p = p.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=0, keepdims=True)


def test_entropy_matches_numpy_softmax_3_classes():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(3, 5, 6, 7, generator=g), dim=0)
    out = predictive_entropy(p)
    assert out.dtype == torch.float32 and out.shape == (1, 5, 6, 7)
    np.testing.assert_allclose(out.numpy(), _np_entropy(p.numpy()), rtol=1e-5, atol=1e-6)


def test_entropy_closed_forms_and_zero_probabilities():
    p = torch.tensor([[0.5, 1.0, 0.0], [0.5, 0.0, 1.0]]).reshape(2, 3, 1)
    out = predictive_entropy(p)[0, :, 0]
    np.testing.assert_allclose(out.numpy(), [np.log(2), 0.0, 0.0], atol=1e-7)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(predictive_entropy(p, normalize=True)[0, 0, 0].item(), 1.0, rtol=1e-6)


def test_single_channel_is_bernoulli_entropy():
    q = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1))
    two = torch.cat([1 - q, q])
    np.testing.assert_allclose(predictive_entropy(q).numpy(), _np_entropy(two.numpy()), rtol=1e-5, atol=1e-6)


def test_rejects_logits_with_clear_message():
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        predictive_entropy(torch.tensor([[2.0, -1.0], [0.3, 0.1]]).reshape(2, 2, 1))
    with pytest.raises(ValueError, match="NaN|finite"):
        predictive_entropy(torch.full((2, 2, 2), float("nan")))


def test_dict_transform_keeps_metadata_and_output_key():
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    p = MetaTensor(torch.softmax(torch.randn(2, 4, 4, 4), 0), affine=affine)
    d = PredictiveEntropyd("prob", output_keys="ent")({"prob": p})
    assert isinstance(d["ent"], MetaTensor) and d["ent"].shape == (1, 4, 4, 4)
    assert torch.equal(d["ent"].affine, p.affine) and d["prob"] is p
    np.testing.assert_allclose(d["ent"].numpy(), _np_entropy(p.numpy()), rtol=1e-5, atol=1e-6)
    assert "prob_entropy" in PredictiveEntropyd("prob")({"prob": p})
    with pytest.raises(KeyError):
        PredictiveEntropyd("missing")({"prob": p})
    with pytest.raises(ValueError, match="one to one"):
        PredictiveEntropyd(["a", "b"], output_keys="c")


def test_foreground_probability_channel():
    p = MetaTensor(torch.softmax(torch.randn(2, 3, 3), 0), affine=torch.eye(4))
    d = ForegroundProbabilityd("prob", output_keys="fg")({"prob": p})
    assert torch.equal(d["fg"], p[1:2]) and isinstance(d["fg"], MetaTensor)
    with pytest.raises(ValueError, match="out of range"):
        ForegroundProbabilityd("prob", channel=5)({"prob": p})


def test_entropy_map_inverts_to_original_space(tmp_path):
    import nibabel as nib

    img = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(img, np.diag([1.5, 1.0, 3.0, 1.0])), str(path))
    pre = Compose([LoadImaged("image", ensure_channel_first=True, image_only=True), SpatialPadd("image", (8, 8, 8))])
    d = pre({"image": str(path)})
    prob = torch.softmax(torch.stack([d["image"][0], -d["image"][0]]), 0)
    d["prob"] = MetaTensor(prob, meta=d["image"].meta, applied_operations=d["image"].applied_operations)
    d = PredictiveEntropyd("prob", output_keys="ent")(d)
    d = Invertd(keys="ent", transform=pre, orig_keys="image")(d)
    assert d["ent"].shape == (1, 6, 5, 4)
    np.testing.assert_allclose(d["ent"].affine.numpy(), np.diag([1.5, 1.0, 3.0, 1.0]))
