"""CPU MEEP kernel (Numba) vs the PyTorch reference (``_reference_sum_count``): values, gradients, checks, edge cases.

Odd spatial sizes (7 x 9 x 5, 33 x 17: no multiple of any part size), both activations, the three kinds, two and
three classes, index maps in several dtypes and one-hot targets, ignore_index, float32 / bfloat16 / float16 logits, an
empty error set, the label and logit checks, and the same bytes whatever the thread count. The reference is
float64-``gradcheck``-ed in tests/losses; here the fast path must equal it to 1e-6 in value and gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from monai_meep.kernels import meep_cpu
from monai_meep.losses import MEEPLoss
from monai_meep.losses.functional import _prepare, _reference_sum_count, regulariser_sum_count

SHAPES = [(7, 9, 5), (33, 17)]


def _case(activation: str, c: int, spatial, target_kind: str, seed: int, ignore: int | None, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (3.0 * torch.randn(2, c, *spatial, generator=g)).to(dtype)
    if target_kind.startswith("index"):
        hi = 2 if (activation == "sigmoid" and c == 1) else c
        if ignore is not None:
            hi = max(hi, ignore + 1)  # the ignored label appears among the others
        target = torch.randint(0, hi, (2, 1, *spatial), generator=g)
        dtypes = {"index": torch.int64, "index_float": torch.float32, "index_uint8": torch.uint8}
        target = target.to(dtypes[target_kind])
    elif target_kind == "onehot":
        idx = torch.randint(0, c, (2, *spatial), generator=g)
        target = torch.nn.functional.one_hot(idx, c).movedim(-1, 1).to(torch.float32)
    else:  # multi-label (sigmoid)
        target = torch.randint(0, 2, (2, c, *spatial), generator=g).to(torch.float32)
    return logits, target


def _run(logits, target, activation, ignore, kind, fast: bool):
    z = logits.detach().clone().requires_grad_(True)
    if fast:
        assert meep_cpu.cpu_supports(z, target, kind)
        total, count = meep_cpu.cpu_sum_count(z, target, activation, ignore, kind)
    else:
        work, tgt = _prepare(z, target, activation)
        total, count = _reference_sum_count(work, tgt, activation, ignore, kind)
    total.backward()
    return total.detach(), count, z.grad


def _assert_same(ref, got, value_tol=1e-6, grad_tol=1e-6):
    (rt, rc, rg), (gt, gc, gg) = ref, got
    assert int(rc) == int(gc)
    assert gt.dtype == rt.dtype == torch.float32
    assert abs(float(gt) - float(rt)) <= value_tol * max(1.0, abs(float(rt)))
    assert gg.dtype == rg.dtype and gg.shape == rg.shape
    torch.testing.assert_close(gg.float(), rg.float(), atol=grad_tol, rtol=0)


@pytest.mark.parametrize("spatial", SHAPES)
@pytest.mark.parametrize("kind", ["meep_kl", "meep_entropy", "confidence_penalty"])
@pytest.mark.parametrize("c", [2, 3])
@pytest.mark.parametrize("target_kind", ["index", "index_float", "index_uint8", "onehot"])
@pytest.mark.parametrize("ignore", [None, 1])
def test_softmax_matches_reference(spatial, kind, c, target_kind, ignore):
    logits, target = _case("softmax", c, spatial, target_kind, seed=c + len(spatial), ignore=ignore)
    ref = _run(logits, target, "softmax", ignore, kind, fast=False)
    _assert_same(ref, _run(logits, target, "softmax", ignore, kind, fast=True))


@pytest.mark.parametrize("spatial", SHAPES)
@pytest.mark.parametrize("kind", ["meep_kl", "meep_entropy", "confidence_penalty"])
@pytest.mark.parametrize(("c", "target_kind"), [(1, "index"), (1, "index_float"), (3, "index"), (3, "multilabel")])
@pytest.mark.parametrize("ignore", [None, 2])
def test_sigmoid_matches_reference(spatial, kind, c, target_kind, ignore):
    if ignore is not None and target_kind == "multilabel":
        ignore = 5  # a sentinel channel: all-zero voxels are ignored (MONAI's one-hot convention)
    logits, target = _case("sigmoid", c, spatial, target_kind, seed=7, ignore=ignore)
    ref = _run(logits, target, "sigmoid", ignore, kind, fast=False)
    _assert_same(ref, _run(logits, target, "sigmoid", ignore, kind, fast=True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_half_precision_logits(dtype, activation):
    c = 2 if activation == "softmax" else 1
    logits, target = _case(activation, c, (9, 8, 7), "index", seed=3, ignore=None, dtype=dtype)
    ref, got = (
        _run(logits, target, activation, None, "meep_kl", False),
        _run(logits, target, activation, None, "meep_kl", True),
    )
    assert got[2].dtype == dtype  # the gradient comes back in the logits' dtype, as autograd gives the reference's
    _assert_same(ref, got, grad_tol=1e-3)  # both gradients are rounded to the half-precision dtype


def test_extreme_logits_and_ties():
    # saturated logits (|d| up to 1e4), exact ties (argmax takes class 0) and a wide spread of moderate values
    z = torch.tensor([[[0.0, 1e4, -1e4, 50.0, -50.0, 3.0, -0.0, 1e-7], [0.0, -1e4, 1e4, -50.0, 50.0, 3.0, 0.0, -1e-7]]])
    for label in (torch.zeros(1, 1, 8, dtype=torch.long), torch.ones(1, 1, 8, dtype=torch.long)):
        for kind in ("meep_kl", "meep_entropy", "confidence_penalty"):
            ref, got = _run(z, label, "softmax", None, kind, False), _run(z, label, "softmax", None, kind, True)
            _assert_same(ref, got)
            assert torch.isfinite(got[2]).all()


def test_empty_error_set_is_exact_zero():
    z = torch.randn(2, 3, 11, 13)
    y = z.argmax(dim=1, keepdim=True)  # every voxel correct
    total, count, grad = _run(z, y, "softmax", None, "meep_kl", True)
    assert float(total) == 0.0 and int(count) == 0
    assert torch.count_nonzero(grad) == 0


def test_same_bytes_whatever_the_thread_count():
    logits, target = _case("softmax", 2, (64, 64, 40), "index", seed=1, ignore=None)  # several parts
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(logits, target, "softmax", None, "meep_kl", True)
        torch.set_num_threads(2)
        two = _run(logits, target, "softmax", None, "meep_kl", True)
    finally:
        torch.set_num_threads(before)
    assert float(one[0]) == float(two[0]) and torch.equal(one[2], two[2])


def test_dispatch_and_reference_switch(monkeypatch):
    # regulariser_sum_count takes the kernel on the CPU by default; MONAI_MEEP_NUMBA=0 switches back to the reference
    logits, target = _case("softmax", 2, (9, 9, 9), "index", seed=5, ignore=None)
    calls = []
    real = meep_cpu.cpu_sum_count
    monkeypatch.setattr(meep_cpu, "cpu_sum_count", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = regulariser_sum_count(logits, target, kind="meep_kl")
    assert calls == [1]
    monkeypatch.setenv("MONAI_MEEP_NUMBA", "0")
    assert not meep_cpu.cpu_supports(logits, target, "meep_kl")
    slow = regulariser_sum_count(logits, target, kind="meep_kl")
    assert calls == [1]
    assert int(fast[1]) == int(slow[1]) and math.isclose(float(fast[0]), float(slow[0]), rel_tol=1e-6)
    # float64 (gradcheck's dtype) always takes the reference
    assert not meep_cpu.cpu_supports(logits.double(), target, "meep_kl")


def test_meep_loss_uses_kernel_with_same_result(monkeypatch):
    from monai.losses import DiceLoss

    logits, target = _case("softmax", 2, (12, 10, 8), "index", seed=2, ignore=None)
    loss = MEEPLoss(DiceLoss(softmax=True, to_onehot_y=True), regularizer="meep_kl", weight=0.5)

    def value_and_grad():
        z = logits.clone().requires_grad_(True)
        v = loss(z, target)
        v.backward()
        return v.detach(), z.grad

    fast_v, fast_g = value_and_grad()
    monkeypatch.setenv("MONAI_MEEP_NUMBA", "0")
    ref_v, ref_g = value_and_grad()
    torch.testing.assert_close(fast_v, ref_v, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(fast_g, ref_g, atol=1e-7, rtol=0)


def test_checks_raise_the_reference_messages():
    logits, target = _case("softmax", 2, (5, 6, 7), "index", seed=4, ignore=None)
    bad_z = logits.clone()
    bad_z[0, 1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        regulariser_sum_count(bad_z, target, kind="meep_kl")
    bad_y = target.clone()
    bad_y[1, 0, 0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"integer labels in \[0, 2\)"):
        regulariser_sum_count(logits, bad_y, kind="meep_kl")
    half = target.float()
    half[0, 0, 1, 1, 1] = 0.5
    with pytest.raises(ValueError, match="integer labels"):
        regulariser_sum_count(logits, half, kind="meep_kl")
    # an ignored label may be out of range (WMH label 2 beside two output channels)
    ignored = target.clone()
    ignored[0, 0, :2] = 2
    total, count = regulariser_sum_count(logits, ignored, kind="meep_kl", ignore_index=2)
    assert torch.isfinite(total)
    # without the checks a non-finite logit gives NaN, as on the reference path
    assert math.isnan(float(regulariser_sum_count(bad_z, target, kind="meep_kl", validate=False)[0]))


def test_polynomial_exp_and_log_accuracy():
    kernels = meep_cpu._kernels()
    xs = np.concatenate([np.linspace(-87, 88, 4001), np.array([-1e-30, 0.0, 1e-30])]).astype(np.float32)
    exp = np.array([kernels._exp(x) for x in xs], np.float64)
    truth = np.exp(xs.astype(np.float64))
    rel = np.abs(exp - truth) / truth
    # fastmath may merge the two-part ln 2 reduction; the error grows with |x|, where exp(-|x|) is negligible
    assert np.max(rel[np.abs(xs) <= 20]) < 2e-7 and np.max(rel) < 4e-7
    es = np.concatenate([np.geomspace(1e-38, 1.0, 2000), np.array([0.0])]).astype(np.float32)
    log1p = np.array([kernels._log1p_unit(e) for e in es], np.float64)
    truth = np.log1p(es.astype(np.float64))
    assert np.all(np.abs(log1p - truth) <= 2e-7 * np.maximum(truth, 1e-300))
    big = np.geomspace(1.0, 1e30, 2000).astype(np.float32)
    log = np.array([kernels._log_ge1(x) for x in big], np.float64)
    assert np.max(np.abs(log - np.log(big.astype(np.float64)))) < 1e-5  # absolute: log up to 69


@pytest.mark.parametrize("kind", ["meep_kl", "meep_entropy", "confidence_penalty"])
@pytest.mark.parametrize("ignore", [None, -1])
def test_one_channel_sigmoid_reads_soft_and_integer_labels_in_the_pass(kind, ignore, monkeypatch):
    """One sigmoid channel: the kernel reads the labels as they are (soft probabilities positive above 1/2, integer
    0 / 1, ignore_index left out) and checks them in its own pass; the caller's separate check does not run."""
    from monai_meep.losses import functional

    g = torch.Generator().manual_seed(11)
    logits = 3.0 * torch.randn(2, 1, 9, 7, 5, generator=g)
    soft = torch.rand(2, 1, 9, 7, 5, generator=g)
    soft[0, 0, 0, 0, :3] = torch.tensor([0.5, 0.0, 1.0])  # the boundaries: 0.5 is negative, as the reference
    if ignore is not None:
        soft[1, 0, :2] = ignore
    for target in (soft, (soft > 0.5).to(torch.uint8), (soft > 0.5).long(), soft > 0.5):
        if ignore is not None and not target.is_floating_point():
            target = target.long()
            target[1, 0, :2] = ignore
        ref = _run(logits, target, "sigmoid", ignore, kind, fast=False)
        _assert_same(ref, _run(logits, target, "sigmoid", ignore, kind, fast=True))
    assert meep_cpu.checks_in_pass(logits, soft, "sigmoid")
    calls = []
    monkeypatch.setattr(functional, "_validate_values", lambda *a: calls.append(a))
    functional.regulariser_sum_count(logits, soft, "sigmoid", ignore, kind)
    assert not calls  # checked in the pass, not by a separate scan


@pytest.mark.parametrize(
    ("bad", "dtype"), [(1.5, torch.float32), (-0.25, torch.float32), (float("nan"), torch.float32), (2, torch.int64)]
)
def test_one_channel_sigmoid_bad_label_raises_the_reference_message(bad, dtype):
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(2, 1, 6, 5, 4, generator=g)
    target = torch.randint(0, 2, (2, 1, 6, 5, 4), generator=g).to(dtype)
    target[1, 0, 3, 2, 1] = bad
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        regulariser_sum_count(logits, target, "sigmoid", kind="meep_kl")
    # the same label as ignore_index is left out, not refused (integer labels; NaN never equals itself)
    if dtype == torch.int64:
        total, _ = regulariser_sum_count(logits, target, "sigmoid", ignore_index=bad, kind="meep_kl")
        assert torch.isfinite(total)
