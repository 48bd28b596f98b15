"""Malformed targets and empty batches never pass silently through the MEEP losses (issue 14)."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss

from monai_meep.losses import ConfidencePenaltyLoss, MEEPLoss, meep_entropy, meep_kl


def _logits(b=2, c=3, shape=(4, 4), seed=0):
    return torch.randn(b, c, *shape, generator=torch.Generator().manual_seed(seed))


def _onehot(idx, c):
    return torch.nn.functional.one_hot(idx[:, 0], c).movedim(-1, 1).float()


def _softmax_bad():
    idx = torch.randint(0, 3, (2, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    good = _onehot(idx, 3)
    twos = good * 2
    zeros = torch.zeros_like(good)
    nan = good.clone()
    nan[0, 0, 0, 0] = float("nan")
    half = good.clone()
    half[1, :, 2, 2] = torch.tensor([0.5, 0.5, 0.0])  # soft: sums to 1 but is not one-hot
    double = good.clone()
    double[0, :, 1, 1] = 1.0  # two classes at one voxel
    return good, {"all zeros": zeros, "all 2s": twos, "NaN": nan, "soft": half, "two hot": double}


@pytest.mark.parametrize("fn", [meep_kl, meep_entropy])
def test_malformed_softmax_one_hot_refused(fn):
    good, bad = _softmax_bad()
    z = _logits()
    fn(z, good)  # a real one-hot passes
    for name, t in bad.items():
        with pytest.raises(ValueError, match="one-hot target") as info:
            fn(z, t)
        assert str(tuple(t.shape)) in str(info.value), name


def test_malformed_one_hot_refused_by_meep_loss_before_the_wrapped_loss():
    good, bad = _softmax_bad()
    loss = MEEPLoss(DiceLoss(softmax=True), regularizer="meep_kl", weight=0.5)
    z = _logits().requires_grad_()
    assert torch.isfinite(loss(z, good))
    for t in bad.values():
        with pytest.raises(ValueError, match="one-hot target"):
            loss(z, t)


def test_one_hot_ignore_index_voxels_are_exempt():
    good, _ = _softmax_bad()
    t = good.clone()
    t[0, :, 0, 0] = 0.0  # an all-zero voxel is "ignored" under a sentinel ignore_index (MONAI's convention)
    z = _logits()
    meep_kl(z, t, ignore_index=-1)
    with pytest.raises(ValueError, match="one-hot target"):
        meep_kl(z, t)


@pytest.mark.parametrize("value", [7.0, -1.0, float("nan")])
def test_sigmoid_targets_outside_0_1_refused(value):
    z = _logits(c=1)
    t = (torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    meep_kl(z, t, activation="sigmoid")
    t[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match="target must hold values in \\[0, 1\\]"):
        meep_kl(z, t, activation="sigmoid")
    zc, tc = _logits(c=2), torch.zeros(2, 2, 4, 4)  # multi-label sigmoid: multi-hot target
    meep_kl(zc, tc, activation="sigmoid")
    tc[1, 1, 3, 3] = value
    with pytest.raises(ValueError, match="one-hot target.*values in \\[0, 1\\]"):
        meep_kl(zc, tc, activation="sigmoid")


def test_empty_batch_is_an_error_for_the_loss_wrappers():
    z, t = torch.randn(0, 2, 4, 4), torch.zeros(0, 1, 4, 4)
    assert torch.isnan(DiceLoss(softmax=True, to_onehot_y=True)(z, t))  # what MONAI alone gives
    for loss in (
        MEEPLoss(DiceLoss(softmax=True, to_onehot_y=True)),
        ConfidencePenaltyLoss(DiceLoss(softmax=True, to_onehot_y=True)),
    ):
        with pytest.raises(ValueError, match="batch size 0"):
            loss(z, t)
    # the regulariser alone is well defined on an empty batch: no voxel is misclassified, so exactly 0
    assert float(meep_kl(z, t)) == 0.0
