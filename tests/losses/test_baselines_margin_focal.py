"""MbLS, FLSD-53 and NACL: closed forms, invariants, and NACL equal to MONAI's NACLLoss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from monai.losses import FocalLoss, NACLLoss

from monai_meep.losses import FLSDLoss, IndexNACLLoss, MbLSLoss


def _data(seed=0, shape=(2, 3, 4, 5), scale=2.0):
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(*shape, generator=g, dtype=torch.float64)
    return x, torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)


def test_mbls_one_voxel_by_hand():
    """Logits (0, 12, 0), label 1, m = 10: distances (12, 0, 12), hinge (2, 0, 2)."""
    x = torch.tensor([0.0, 12.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    y = torch.ones(1, 1, 1, 1, dtype=torch.long)
    ce = math.log(1 + 2 * math.exp(-12))
    assert float(MbLSLoss(margin=10, alpha=0.1)(x, y)) == pytest.approx(ce + 0.1 * 4 / 3, rel=1e-12)
    assert float(MbLSLoss(margin=10, alpha=0.1, class_reduction="sum")(x, y)) == pytest.approx(ce + 0.4, rel=1e-12)
    with pytest.raises(ValueError):
        MbLSLoss(class_reduction="max")
    with pytest.raises(ValueError):
        MbLSLoss(margin=-1.0)


@given(seed=st.integers(0, 2**16), scale=st.floats(0.0, 20.0))
def test_mbls_with_a_huge_margin_is_ce(seed, scale):
    x, y = _data(seed=seed, scale=scale)
    torch.testing.assert_close(MbLSLoss(margin=1e6, alpha=5.0)(x, y), F.cross_entropy(x, y[:, 0]))


def test_mbls_penalty_gradient_reaches_only_voxels_beyond_the_margin():
    x = torch.tensor([[0.0, 3.0], [0.0, 30.0]], dtype=torch.float64).T.reshape(1, 2, 2, 1).requires_grad_(True)
    MbLSLoss(margin=10.0, alpha=1.0, class_reduction="sum").penalty(x).sum().backward()
    # voxel 0 (distance 3 < m) gets none; voxel 1 (distance 30) pushes its max logit down and the other up
    torch.testing.assert_close(x.grad[0, :, 0, 0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(x.grad[0, :, 1, 0], torch.tensor([-1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize(("n_cls", "gamma"), [(10, 5.0), (2, 3.0)])
def test_flsd_uniform_logits_by_hand(n_cls, gamma):
    """p_y = 1/C: C = 10 is below 0.2 (gamma 5), C = 2 above (gamma 3)."""
    x = torch.zeros(1, n_cls, 2, 2, dtype=torch.float64)
    y = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    want = -((1 - 1 / n_cls) ** gamma) * math.log(1 / n_cls)
    assert float(FLSDLoss()(x, y)) == pytest.approx(want, rel=1e-12)


@given(seed=st.integers(0, 2**16))
def test_flsd_where_every_p_y_is_at_least_threshold_is_focal_gamma_3(seed):
    x, y = _data(seed=seed, scale=1.0)
    x = x.clamp(-3, 3) + 6.0 * F.one_hot(y[:, 0], 3).movedim(-1, 1)  # true logit ahead by >= 0: p_y >= 1/3
    assert float(torch.softmax(x, 1).gather(1, y).min()) >= 0.2
    monai = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=3.0)(x, y)
    # MONAI's softmax focal "mean" also averages over the C channels; MONAI computes in float32
    torch.testing.assert_close(FLSDLoss()(x, y), 3 * monai.double(), rtol=1e-5, atol=1e-7)


def test_flsd_gamma_switches_at_the_threshold():
    """Two voxels either side of p_y = 0.2 (two classes, logit gap log(p / (1 - p)))."""
    p = torch.tensor([0.19, 0.21], dtype=torch.float64)
    x = torch.stack([torch.zeros(2, dtype=torch.float64), torch.log(p / (1 - p))]).view(1, 2, 2, 1)
    y = torch.ones(1, 1, 2, 1, dtype=torch.long)
    got = FLSDLoss(reduction="none")(x, y)[0, 0, :, 0]
    want = torch.tensor([-(0.81**5) * math.log(0.19), -(0.79**3) * math.log(0.21)], dtype=torch.float64)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"distance_type": "l2"}, {"kernel_ops": "gaussian", "sigma": 0.7}, {"kernel_size": 5, "alpha": 0.4}],
)
def test_nacl_is_monai_nacl(dims, kwargs):
    shape = (2, 3, 6, 5) if dims == 2 else (2, 3, 5, 4, 3)
    x, y = _data(seed=dims, shape=shape)
    x = x.float()
    monai = NACLLoss(classes=3, dim=dims, **kwargs)(x, y[:, 0])
    torch.testing.assert_close(IndexNACLLoss(3, dims, **kwargs)(x, y), monai)
    # an ignore_index that no voxel carries takes the masked path and gives the same value
    torch.testing.assert_close(IndexNACLLoss(3, dims, ignore_index=7, **kwargs)(x, y), monai)


def test_nacl_checks_classes_and_dims():
    x, y = _data()
    with pytest.raises(ValueError, match=r"classes=4, dim=2"):
        IndexNACLLoss(4, 2)(x, y)
    with pytest.raises(ValueError, match=r"classes=3, dim=3"):
        IndexNACLLoss(3, 3)(x, y)
    with pytest.raises(ValueError):
        IndexNACLLoss(3, 2, kernel_ops="median")
