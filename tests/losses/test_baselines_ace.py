"""mL1-ACE (hard and soft binning) against a loop reference, MONAI's CalibrationErrorMetric, closed forms and
gradcheck; Dice + CE + mL1-ACE against MONAI's DiceCELoss plus the term."""

from __future__ import annotations

import baselines_reference as ref
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import CalibrationErrorMetric

from monai_meep.losses import DiceCEML1ACELoss, MEEPLoss, ML1ACELoss, marginal_l1_ace


def _data(seed=0, shape=(2, 3, 4, 5), ignore=False):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(*shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
    if ignore:
        y[torch.rand(y.shape, generator=g) < 0.3] = shape[1]
    return x, y


@pytest.mark.parametrize("binning", ["hard", "soft"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 3, 4)])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("num_bins", [1, 5, 20])
def test_matches_reference(binning, shape, ignore, num_bins):
    x, y = _data(shape=shape, ignore=ignore)
    n_cls = shape[1]
    ii = n_cls if ignore else None
    lab, valid = ref.labels_and_valid(ref.to_np(y), ii)
    onehot = np.stack([(lab == k) & valid for k in range(n_cls)], axis=1).astype(float)
    want = ref.ace(ref.softmax(ref.to_np(x)), onehot, valid, num_bins, soft=binning == "soft")
    loss = ML1ACELoss(num_bins=num_bins, binning=binning, ignore_index=ii, reduction="none")
    got = loss(x, y)
    assert got.shape == (shape[0], n_cls) + (1,) * (len(shape) - 2)
    torch.testing.assert_close(got.reshape(want.shape), torch.as_tensor(want), rtol=1e-10, atol=1e-12)
    mean = ML1ACELoss(num_bins=num_bins, binning=binning, ignore_index=ii)(x, y)
    torch.testing.assert_close(mean, torch.as_tensor(want.mean()))
    total = ML1ACELoss(num_bins=num_bins, binning=binning, ignore_index=ii, reduction="sum")(x, y)
    torch.testing.assert_close(total, torch.as_tensor(want.sum()))


@pytest.mark.parametrize("include_background", [True, False])
def test_hard_binning_equals_monai_calibration_error_metric(include_background):
    x, y = _data(seed=1, shape=(2, 3, 6, 6))
    prob = torch.softmax(x, 1).float()
    onehot = F.one_hot(y[:, 0], 3).movedim(-1, 1).float()
    metric = CalibrationErrorMetric(
        num_bins=20, include_background=include_background, calibration_reduction="average", metric_reduction="none"
    )
    monai = metric(prob, onehot)
    got = ML1ACELoss(num_bins=20, include_background=include_background, reduction="none")(x.float(), y)
    torch.testing.assert_close(got.reshape(monai.shape), monai, rtol=1e-5, atol=1e-6)


def test_closed_forms():
    # uniform logits, half the voxels of each class: every voxel at p = 1/2 with mean label 1/2 -> 0
    x = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    y = torch.tensor([[[[0, 1], [1, 0]]]])
    for binning in ("hard", "soft"):
        assert float(ML1ACELoss(binning=binning)(x, y)) == pytest.approx(0.0, abs=1e-15)
    # confident and right: p = 1 - e, label 1 (or p = e, label 0) -> ACE = e
    e = 1e-3
    logit = float(np.log((1 - e) / e))
    x = torch.tensor([[logit, 0.0], [0.0, logit]], dtype=torch.float64).T.reshape(1, 2, 2, 1)
    y = torch.tensor([0, 1]).reshape(1, 1, 2, 1)
    assert float(ML1ACELoss(binning="hard")(x, y)) == pytest.approx(e, rel=1e-9)
    # one voxel on a bin centre (0.125 with 4 bins) is wholly in that bin: soft = hard
    p = torch.tensor([0.125, 0.875], dtype=torch.float64).reshape(1, 2, 1)
    onehot = torch.tensor([0.0, 1.0], dtype=torch.float64).reshape(1, 2, 1)
    hard = marginal_l1_ace(p, onehot, num_bins=4, binning="hard")
    torch.testing.assert_close(marginal_l1_ace(p, onehot, num_bins=4, binning="soft"), hard)
    torch.testing.assert_close(hard, torch.tensor([[0.125, 0.125]], dtype=torch.float64))


def test_all_ignored_image_gives_zero():
    x, y = _data(seed=2)
    y[0] = 3
    got = ML1ACELoss(ignore_index=3, reduction="none")(x, y)
    assert bool((got[0] == 0).all()) and bool((got[1] > 0).all())


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_gradcheck(binning):
    x, _ = _data(seed=3, shape=(1, 3, 3, 3))
    y = torch.randint(0, 3, (1, 1, 3, 3), generator=torch.Generator().manual_seed(3))
    x.requires_grad_(True)
    loss = ML1ACELoss(num_bins=5, binning=binning)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (x,), eps=1e-7, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ML1ACELoss(num_bins=0)
    with pytest.raises(ValueError):
        ML1ACELoss(binning="kde")
    x, y = _data()
    with pytest.raises(ValueError, match=r"\(2, 1, 4\).*\(2, 3, 4, 5\)"):
        ML1ACELoss()(x, y[..., 0])
    with pytest.raises(ValueError, match="same shape"):
        marginal_l1_ace(torch.rand(1, 2, 3), torch.rand(1, 2, 4))
    with pytest.raises(ValueError):
        DiceCEML1ACELoss(reduction="none")
    with pytest.raises(ValueError):
        DiceCEML1ACELoss(lambda_ace=-1.0)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_dice_ce_ml1ace_is_monai_dicece_plus_the_term(binning):
    x, y = _data(seed=4, shape=(2, 2, 4, 4, 3))
    loss = DiceCEML1ACELoss(lambda_dice=0.7, lambda_ce=1.3, lambda_ace=2.0, binning=binning, batch=True)
    dicece = DiceCELoss(to_onehot_y=True, softmax=True, batch=True, lambda_dice=0.7, lambda_ce=1.3)
    term = ML1ACELoss(binning=binning)(x, y)
    torch.testing.assert_close(loss(x, y), dicece(x, y) + 2.0 * term)
    assert sorted(loss.parts) == ["ace", "ce", "dice"]
    torch.testing.assert_close(loss.parts["ace"], term)


def test_dice_ce_ml1ace_ignores_labels_and_composes_with_meep():
    x, y = _data(seed=5, shape=(2, 2, 4, 4), ignore=True)
    loss = DiceCEML1ACELoss(include_background=False, batch=True, ignore_index=2)
    value = loss(x, y)
    assert torch.isfinite(value)
    wrapped = MEEPLoss(loss, regularizer="meep_entropy", weight=0.3)
    assert wrapped.activation == "softmax" and wrapped.ignore_index == 2
    torch.testing.assert_close(wrapped(x, y), value - 0.3 * wrapped.parts["regularizer"])
