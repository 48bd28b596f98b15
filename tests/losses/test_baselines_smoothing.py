"""Label smoothing (CE and Dice) and SVLS: equality with MONAI / torch where they have it, closed forms, kernels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from monai.losses import DiceCELoss, DiceLoss

from monai_meep.losses import LabelSmoothingCELoss, LabelSmoothingDiceLoss, SVLSLoss, smooth_one_hot, svls_kernel


def _data(seed=0, shape=(2, 3, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(*shape, generator=g, dtype=torch.float64), torch.randint(
        0, shape[1], (shape[0], 1, *shape[2:]), generator=g
    )


@pytest.mark.parametrize("a", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 3, 4)])
def test_ls_ce_is_monai_dicece_ce_part(a, shape):
    x, y = _data(shape=shape)
    monai_ce = DiceCELoss(to_onehot_y=True, softmax=True, label_smoothing=a).ce(x, y)
    torch.testing.assert_close(LabelSmoothingCELoss(a)(x, y), monai_ce)


def test_ls_ce_ignore_index_matches_torch():
    x, y = _data(seed=1)
    y[0, 0, :2] = 7
    got = LabelSmoothingCELoss(0.2, ignore_index=7)(x, y)
    want = F.cross_entropy(x, y[:, 0], ignore_index=7, label_smoothing=0.2)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("n_cls", [2, 5])
def test_ls_ce_uniform_logits_is_log_c(n_cls):
    """p = 1/C everywhere: -sum_k q_k log(1/C) = log C whatever the smoothing."""
    x = torch.zeros(1, n_cls, 3, 3, dtype=torch.float64)
    y = torch.randint(0, n_cls, (1, 1, 3, 3))
    for a in (0.0, 0.1, 1.0):
        torch.testing.assert_close(LabelSmoothingCELoss(a)(x, y), torch.tensor(math.log(n_cls), dtype=torch.float64))


@given(seed=st.integers(0, 2**16))
def test_ls_ce_with_zero_smoothing_is_ce(seed):
    x, y = _data(seed=seed)
    torch.testing.assert_close(LabelSmoothingCELoss(0.0)(x, y), F.cross_entropy(x, y[:, 0]))


def test_smooth_one_hot_by_hand():
    onehot = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # (1, C=3, 3); last voxel ignored
    got = smooth_one_hot(onehot, 0.3)
    want = torch.tensor([[[0.8, 0.1, 0.0], [0.1, 0.8, 0.0], [0.1, 0.1, 0.0]]])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="smoothing"):
        smooth_one_hot(onehot, 1.5)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_ls_dice_with_zero_smoothing_is_monai_dice(include_background, batch):
    x, y = _data(seed=2)
    mine = LabelSmoothingDiceLoss(0.0, include_background=include_background, batch=batch)
    monai = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True, batch=batch)
    torch.testing.assert_close(mine(x, y), monai(x, y))


def test_ls_dice_by_formula():
    """Per (image, class): 1 - (2 sum p q + s) / (sum p + sum q + s), q = (1 - a) y + a / C; ignored voxels out."""
    x, y = _data(seed=3)
    y[1, 0, 0] = 9
    a, s = 0.2, 1e-5
    p = torch.softmax(x, 1)
    valid = (y != 9).double()
    q = ((1 - a) * F.one_hot(y[:, 0].clamp(max=2), 3).movedim(-1, 1) + a / 3) * valid
    p = p * valid
    dice = 1 - (2 * (p * q).sum((2, 3)) + s) / (p.sum((2, 3)) + q.sum((2, 3)) + s)
    got = LabelSmoothingDiceLoss(a, ignore_index=9, reduction="none")(x, y)
    torch.testing.assert_close(got, dice[..., None, None])
    torch.testing.assert_close(LabelSmoothingDiceLoss(a, ignore_index=9)(x, y), dice.mean())


def test_ls_dice_gradcheck():
    x, y = _data(seed=4, shape=(1, 3, 3, 3))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: LabelSmoothingDiceLoss(0.1)(z, y), (x,))


def test_svls_kernels():
    k = svls_kernel(2)
    assert k.shape == (3, 3) and float(k[1, 1]) == pytest.approx(0.5) and float(k.sum()) == pytest.approx(1.0)
    g1 = torch.tensor([math.exp(-0.5), 1.0, math.exp(-0.5)], dtype=torch.float64)
    g1 = g1 / g1.sum()
    torch.testing.assert_close(svls_kernel(2, kernel="gaussian"), torch.outer(g1, g1))
    torch.testing.assert_close(svls_kernel(3, kernel="gaussian"), g1[:, None, None] * g1[None, :, None] * g1)
    k3 = svls_kernel(3)
    assert k3.shape == (3, 3, 3) and float(k3[1, 1, 1]) == pytest.approx(0.5)
    for bad in ({"kernel_size": 2}, {"sigma": 0.0}, {"kernel": "box"}):
        with pytest.raises(ValueError):
            svls_kernel(2, **bad)
    with pytest.raises(ValueError):
        svls_kernel(4)


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (1, 3, 3, 4, 2)])
def test_svls_on_a_constant_label_is_ce(shape):
    """One class everywhere: replicate padding keeps the one-hot at the border too, so SVLS is plain CE."""
    x, _ = _data(seed=5, shape=shape)
    y = torch.full((1, 1, *shape[2:]), 2)
    torch.testing.assert_close(SVLSLoss()(x, y), F.cross_entropy(x, y[:, 0]))


def test_svls_two_voxel_target_by_hand():
    """A 1x2 image labelled [0, 1]: with replicate padding each voxel sees its neighbour only through the kernel's
    column on that side, weight e^{-1/2} / S / (2 (1 - 1/S^2)) with S = 1 + 2 e^{-1/2} (centre weight 1/2)."""
    s = 1 + 2 * math.exp(-0.5)
    w = math.exp(-0.5) / s / (2 * (1 - 1 / s**2))
    y = torch.tensor([[[[0, 1]]]])
    x = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    q = SVLSLoss().smoothed_target(x, y[:, 0], torch.ones(1, 1, 2, dtype=torch.bool))
    torch.testing.assert_close(q[0, :, 0], torch.tensor([[1 - w, w], [w, 1 - w]], dtype=torch.float64))
    # uniform logits: the loss is log 2 whatever the target
    torch.testing.assert_close(SVLSLoss()(x, y), torch.tensor(math.log(2), dtype=torch.float64))


def test_svls_target_sums_to_one_next_to_ignored_voxels():
    x, y = _data(seed=6)
    y[0, 0, 1:3, 1:3] = 5
    labels = y[:, 0].clamp(max=2)
    valid = y[:, 0] != 5
    q = SVLSLoss(ignore_index=5).smoothed_target(x, labels, valid)
    torch.testing.assert_close(q.sum(1)[valid], torch.ones(int(valid.sum()), dtype=torch.float64))
