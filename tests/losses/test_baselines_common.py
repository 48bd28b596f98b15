"""The voxel-wise calibration baselines (LS-CE, SVLS, MbLS, NACL, FLSD-53) against float64 NumPy references of
their formulas: values in 2D and 3D for every reduction and with ignored labels, one-hot targets, gradients, bad
inputs, composition with MEEPLoss, and non-negativity."""

from __future__ import annotations

import baselines_reference as ref
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from monai_meep.losses import FLSDLoss, IndexNACLLoss, LabelSmoothingCELoss, MbLSLoss, MEEPLoss, SVLSLoss

# name -> (build(spatial_dims, **kw), reference(logits, target, **kw)); margins small enough to be active
CASES = {
    "ls": (lambda d, **kw: LabelSmoothingCELoss(0.1, **kw), lambda x, y, **kw: ref.ls_ce(x, y, 0.1, **kw)),
    "svls": (lambda d, **kw: SVLSLoss(**kw), lambda x, y, **kw: ref.svls(x, y, **kw)),
    "svls_gaussian": (
        lambda d, **kw: SVLSLoss(kernel="gaussian", sigma=0.8, **kw),
        lambda x, y, **kw: ref.svls(x, y, sigma=0.8, svls_kernel=False, **kw),
    ),
    "mbls": (
        lambda d, **kw: MbLSLoss(margin=1.0, alpha=0.3, **kw),
        lambda x, y, **kw: ref.mbls(x, y, 1.0, 0.3, **kw),
    ),
    "mbls_sum": (
        lambda d, **kw: MbLSLoss(margin=0.5, alpha=0.2, class_reduction="sum", **kw),
        lambda x, y, **kw: ref.mbls(x, y, 0.5, 0.2, class_mean=False, **kw),
    ),
    "nacl": (lambda d, **kw: IndexNACLLoss(3, d, **kw), lambda x, y, **kw: ref.nacl(x, y, **kw)),
    "nacl_l2": (
        lambda d, **kw: IndexNACLLoss(3, d, distance_type="l2", alpha=0.5, **kw),
        lambda x, y, **kw: ref.nacl(x, y, alpha=0.5, l1=False, **kw),
    ),
    "flsd": (lambda d, **kw: FLSDLoss(**kw), lambda x, y, **kw: ref.flsd(x, y, **kw)),
}
SHAPES = {2: (4, 5), 3: (3, 3, 4)}


def _data(dims: int, ignore: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    spatial = SHAPES[dims]
    x = 2.0 * torch.randn(2, 3, *spatial, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 1, *spatial), generator=g)
    if ignore:
        y[torch.rand(y.shape, generator=g) < 0.25] = 3  # a label >= C, as WMH label 2 with two channels
    return x, y


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("ignore", [False, True])
def test_matches_reference(name, dims, ignore):
    build, reference = CASES[name]
    x, y = _data(dims, ignore)
    ii = 3 if ignore else None
    # MONAI's mean filter stores 1/9 (1/27) in float32, so NACL's tau is exact only to float32 rounding
    rtol = 1e-7 if name.startswith("nacl") else 1e-10
    for reduction in ("mean", "sum", "none"):
        got = build(dims, ignore_index=ii, reduction=reduction)(x, y)
        want = torch.as_tensor(reference(x, y, ignore_index=ii, reduction=reduction), dtype=torch.float64)
        assert got.shape == want.shape, (name, reduction)
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_index_forms_and_one_hot_agree(name):
    build, _ = CASES[name]
    x, y = _data(2, False, seed=1)
    loss = build(2)
    onehot = torch.nn.functional.one_hot(y[:, 0], 3).movedim(-1, 1).double()
    want = loss(x, y)
    torch.testing.assert_close(loss(x, y[:, 0]), want)
    torch.testing.assert_close(loss(x, onehot), want)
    torch.testing.assert_close(loss(x, y.double()), want)  # float labels, as MONAI transforms give them


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    build, _ = CASES[name]
    x, y = _data(2, True, seed=2)
    x = x[:1, :, :3, :3].clone().requires_grad_(True)
    loss = build(2, ignore_index=3)
    assert torch.autograd.gradcheck(lambda z: loss(z, y[:1, :, :3, :3]), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_inputs_raise(name):
    build, _ = CASES[name]
    loss = build(2)
    x, y = _data(2, False)
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(2, 3, 4, 5\)"):
        loss(x, y[..., :4])
    with pytest.raises(ValueError, match=r"\(2, 2, 4, 5\).*\(2, 3, 4, 5\)"):
        loss(x, y.expand(2, 2, 4, 5))
    with pytest.raises(ValueError, match="outside"):
        loss(x, y + 1)  # label 3 with three channels and no ignore_index
    with pytest.raises(ValueError, match="C >= 2"):
        loss(x[:, :1], y.clamp(max=0))
    with pytest.raises(TypeError):
        loss(x.numpy(), y)
    with pytest.raises(TypeError):
        loss(x.long(), y)
    with pytest.raises(TypeError):
        loss(x, y.tolist())
    with pytest.raises(ValueError):
        build(2, reduction="avg")


@pytest.mark.parametrize("name", sorted(CASES))
def test_composes_with_meep(name):
    """MEEPLoss reads the softmax activation and the ignore_index the baseline declares."""
    build, _ = CASES[name]
    base = build(2, ignore_index=3)
    wrapped = MEEPLoss(base, regularizer="meep_kl", weight=0.5)
    assert wrapped.activation == "softmax" and wrapped.ignore_index == 3
    x, y = _data(2, True, seed=3)
    torch.testing.assert_close(wrapped(x, y), base(x, y) + 0.5 * wrapped.parts["regularizer"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_reduced_precision_logits_are_upcast(name):
    build, _ = CASES[name]
    x, y = _data(2, False, seed=4)
    got = build(2)(x.to(torch.bfloat16), y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), build(2)(x.to(torch.bfloat16).double(), y), rtol=1e-5, atol=1e-6)


@given(
    name=st.sampled_from(sorted(CASES)),
    scale=st.floats(0.0, 30.0),
    seed=st.integers(0, 2**16),
)
def test_non_negative(name, scale, seed):
    build, _ = CASES[name]
    x, y = _data(2, False, seed=seed)
    assert float(build(2)(scale * x, y)) >= 0.0
    assert bool((build(2, reduction="none")(scale * x, y) >= 0).all())
