"""meep_entropy / meep_kl / mean_entropy against closed forms, a float64 NumPy recomputation and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from meep_reference import reference
from monai.metrics.utils import create_ignore_mask

from monai_meep.losses import mean_entropy, meep_entropy, meep_kl
from monai_meep.losses.functional import regulariser_sum_count

MEEP = {"meep_entropy": meep_entropy, "meep_kl": meep_kl}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("k", [2, 3, 5])
def test_uniform_logits_softmax(k):
    logits = torch.zeros(2, k, 3, 4)
    target = torch.full((2, 1, 3, 4), k - 1)  # argmax of a tie is class 0: every voxel is wrong
    assert meep_entropy(logits, target).item() == pytest.approx(math.log(k), rel=1e-6)
    assert meep_kl(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_entropy(logits).item() == pytest.approx(math.log(k), rel=1e-6)


def test_uniform_logits_sigmoid_multilabel():
    logits = torch.zeros(1, 3, 4, 4, 2)
    target = torch.ones(1, 3, 4, 4, 2)  # z = 0 predicts 0 (p = 0.5 is not > 0.5): every pair is wrong
    assert meep_entropy(logits, target, "sigmoid").item() == pytest.approx(math.log(2), rel=1e-6)
    assert meep_kl(logits, target, "sigmoid").item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("a", [3.0, 12.0, 40.0])
def test_confident_wrong_voxel_analytic(a):
    """Logits (a, 0, 0) labelled 1: p = (e^a, 1, 1) / (e^a + 2); correct voxels around it must not count."""
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = a
    target = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    target[0, 0, 0, 0] = 1
    logits[0, 0, 1:, :] = 5.0  # correct and confident: not in W
    logits[0, 0, 0, 1] = 5.0
    log_norm = a + math.log1p(2 * math.exp(-a))  # log(e^a + 2), stable
    logp = [a - log_norm, -log_norm, -log_norm]
    entropy = -sum(math.exp(v) * v for v in logp)
    kl = -math.log(3) - sum(logp) / 3  # = log(e^a + 2) - a / 3 - log 3
    # float32 log_softmax: log p of the winning class is a difference of numbers ~a, so ~1e-7 absolute
    assert meep_entropy(logits, target).item() == pytest.approx(entropy, rel=1e-5, abs=1e-6)
    assert meep_entropy(logits.double(), target).item() == pytest.approx(entropy, rel=1e-9, abs=1e-15)
    assert meep_kl(logits, target).item() == pytest.approx(kl, rel=1e-6)
    assert meep_kl(logits.double(), target).item() == pytest.approx(kl, rel=1e-12)


def test_confident_wrong_sigmoid_analytic():
    z = 9.0
    logits = torch.tensor([z, -4.0]).view(1, 1, 2)  # first voxel predicts 1 but label 0; second is right
    target = torch.tensor([0.0, 0.0]).view(1, 1, 2)
    p = 1 / (1 + math.exp(-z))
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    kl = -math.log(2) - 0.5 * (math.log(p) + math.log(1 - p))
    assert meep_entropy(logits, target, "sigmoid").item() == pytest.approx(entropy, rel=1e-4)
    assert meep_kl(logits, target, "sigmoid").item() == pytest.approx(kl, rel=1e-6)


@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl", "all"])
def test_two_class_softmax_equals_sigmoid(kind):
    z = (torch.randn(3, 1, 5, 6, generator=_gen(1)) * 3).requires_grad_()
    target = torch.randint(0, 2, (3, 1, 5, 6), generator=_gen(2))
    pair = torch.cat([torch.zeros_like(z), z], dim=1)  # softmax(0, z)[1] = sigmoid(z)
    if kind == "all":
        a, b = mean_entropy(z, "sigmoid"), mean_entropy(pair, "softmax")
    else:
        a, b = MEEP[kind](z, target, "sigmoid"), MEEP[kind](pair, target, "softmax")
    assert a.item() == pytest.approx(b.item(), rel=1e-6, abs=1e-7)
    (ga,) = torch.autograd.grad(a, z)
    (gb,) = torch.autograd.grad(b, z)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------------------- NumPy float64 reference
CASES = [
    # (shape, activation, target form, ignore_index)
    ((2, 3, 7, 6), "softmax", "index", None),
    ((1, 4, 5, 4, 3), "softmax", "index", 1),
    ((3, 2, 4, 4, 4), "softmax", "nochannel", None),
    ((2, 3, 6, 5), "softmax", "onehot", None),
    ((2, 3, 6, 5), "softmax", "onehot", 2),  # valid channel: voxels of class 2 ignored
    ((2, 3, 6, 5), "softmax", "onehot", 7),  # sentinel: all-zero voxels ignored
    ((2, 2, 5, 5, 5), "softmax", "index", 2),  # WMH-style labels 0 / 1 / 2
    ((2, 1, 6, 6, 3), "sigmoid", "index", None),
    ((2, 1, 6, 6), "sigmoid", "index", 2),
    ((2, 3, 5, 4), "sigmoid", "multilabel", None),
    ((1, 3, 4, 4, 4), "sigmoid", "index", None),  # index map into a per-channel sigmoid (to_onehot_y + sigmoid)
]


def _make(shape, activation, form, ignore_index, seed):
    g = _gen(seed)
    b, c, *spatial = shape
    logits = torch.randn(shape, generator=g) * 2.5
    n_labels = 2 if activation == "sigmoid" and c == 1 else c
    labels = torch.randint(0, n_labels, (b, 1, *spatial), generator=g)
    if ignore_index is not None and form in ("index", "nochannel"):
        labels = torch.where(torch.rand(labels.shape, generator=g) < 0.25, ignore_index, labels)
    if form == "index":
        return logits, labels
    if form == "nochannel":
        return logits, labels[:, 0]
    if form == "multilabel":
        return logits, (torch.rand(shape, generator=g) < 0.4).float()
    onehot = torch.nn.functional.one_hot(labels[:, 0], c).movedim(-1, 1).float()
    unlabelled = torch.rand(labels.shape, generator=g) < 0.2
    if ignore_index is not None and not 0 <= ignore_index < c:
        # some unlabelled (all-zero) voxels, which only a sentinel ignore_index skips; elsewhere they are refused
        onehot = torch.where(unlabelled, 0.0, onehot)
    return logits, onehot


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[2]}-{len(c[0]) - 2}d-ii{c[3]}")
@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl"])
def test_matches_float64_numpy(case, kind):
    shape, activation, form, ignore_index = case
    for seed in (0, 1):
        logits, target = _make(shape, activation, form, ignore_index, seed)
        value = MEEP[kind](logits, target, activation, ignore_index)
        expected, _ = reference(logits, target, activation, kind, ignore_index)
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(expected, rel=2e-6, abs=1e-6)
        total, count = regulariser_sum_count(logits, target, activation, ignore_index, kind)
        assert count.dtype == torch.int64 and not count.requires_grad
        assert total.item() / max(count.item(), 1) == pytest.approx(expected, rel=2e-6, abs=1e-6)


def test_onehot_ignore_follows_monai_rule():
    """A one-hot target with ignore_index drops the voxels MONAI's create_ignore_mask drops (channel or sentinel)."""
    for ii in (1, 9, -1):
        logits, target = _make((2, 3, 6, 5), "softmax", "onehot", ii, 3)
        keep = create_ignore_mask(target, ii).bool()
        as_index = torch.where(keep, target.argmax(1, keepdim=True), 99)
        for kind in ("meep_entropy", "meep_kl"):
            total, count = regulariser_sum_count(logits, target, "softmax", ii, kind)
            total_i, count_i = regulariser_sum_count(logits, as_index, "softmax", 99, kind)
            assert count.item() == count_i.item() > 0
            assert total.item() == pytest.approx(total_i.item(), rel=1e-6)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_mean_entropy_matches_numpy(activation):
    logits = torch.randn(2, 3, 5, 4, 3, generator=_gen(4)) * 3
    expected, _ = reference(logits, None, activation, "confidence_penalty")
    assert mean_entropy(logits, activation).item() == pytest.approx(expected, rel=2e-6)
    target = torch.randint(0, 3, (2, 1, 5, 4, 3), generator=_gen(5))
    expected_ii, _ = reference(logits, target, activation, "confidence_penalty", ignore_index=2)
    assert mean_entropy(logits, activation, target, ignore_index=2).item() == pytest.approx(expected_ii, rel=2e-6)


# ------------------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl"])
def test_gradcheck_float64(activation, kind):
    g = _gen(6)
    c = 3
    logits = torch.randn(2, c, 3, 3, generator=g, dtype=torch.float64)
    # keep clear of decision boundaries so the finite differences never flip the set W
    logits = logits + torch.sign(logits) * 0.2
    if activation == "softmax":
        target = torch.randint(0, c, (2, 1, 3, 3), generator=g)
    else:
        target = (torch.rand(2, c, 3, 3, generator=g, dtype=torch.float64) < 0.5).double()
    logits.requires_grad_()
    fn = MEEP[kind]
    assert torch.autograd.gradcheck(lambda z: fn(z, target, activation, validate=False), (logits,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda z: mean_entropy(z, activation, validate=False), (logits,), atol=1e-7)
    assert fn(logits, target, activation).dtype == torch.float64


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl"])
def test_mask_carries_no_gradient(activation, kind):
    """The gradient is that of (1/|W|) sum_{i in W} h(z_i) with W a constant: zero outside W, no target gradient."""
    logits = (torch.randn(2, 3, 4, 5, generator=_gen(7), dtype=torch.float64) * 2).requires_grad_()
    if activation == "softmax":
        idx = torch.randint(0, 3, (2, 1, 4, 5), generator=_gen(8))
        target = torch.nn.functional.one_hot(idx[:, 0], 3).movedim(-1, 1).double()
        wrong = (logits.argmax(1, keepdim=True) != idx).expand_as(logits)
    else:
        target = (torch.rand(2, 3, 4, 5, generator=_gen(8)) < 0.5).double()
        wrong = (logits > 0) != (target > 0.5)
    target.requires_grad_()  # a float target must not receive a gradient through the mask
    value = MEEP[kind](logits, target, activation)
    value.backward()
    assert target.grad is None
    assert (logits.grad[~wrong] == 0).all()
    assert logits.grad[wrong].abs().sum() > 0
    # the same through an explicit per-element formula with W fixed
    z = logits.detach().clone().requires_grad_()
    if activation == "softmax":
        logp = torch.log_softmax(z, 1)
        h = -(logp.exp() * logp).sum(1) if kind == "meep_entropy" else -math.log(3) - logp.mean(1)
        w = wrong[:, 0]
    else:
        lp, lq = torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(-z)
        h = -(lp.exp() * lp + lq.exp() * lq) if kind == "meep_entropy" else -math.log(2) - 0.5 * (lp + lq)
        w = wrong
    (h[w].sum() / w.sum()).backward()
    torch.testing.assert_close(logits.grad, z.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl"])
def test_empty_error_set_is_exact_zero(activation, kind):
    target = torch.randint(0, 2, (2, 1, 4, 4, 4), generator=_gen(9))
    if activation == "softmax":
        logits = torch.cat([1 - target, target], 1).float() * 6 - 3  # always right
    else:
        logits = target.float() * 6 - 3
    logits.requires_grad_()
    value = MEEP[kind](logits, target, activation)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    # everything ignored: also an exact 0, never 0/0
    logits.grad = None
    ignored = MEEP[kind](logits, torch.full_like(target, 5), activation, ignore_index=5)
    ignored.backward()
    assert ignored.item() == 0.0 and not torch.isnan(logits.grad).any()


def test_ignored_voxels_do_not_matter():
    """WMH-style labels 0 / 1 / 2 with ignore_index=2: logits on label-2 voxels change nothing, get no gradient."""
    logits = torch.randn(2, 2, 6, 6, 4, generator=_gen(10)) * 2
    target = torch.randint(0, 3, (2, 1, 6, 6, 4), generator=_gen(11))
    other = logits.clone()
    other[(target == 2).expand_as(logits)] = torch.randn(int((target == 2).sum()) * 2, generator=_gen(12)) * 9
    for fn in (meep_entropy, meep_kl):
        a, b = fn(logits, target, ignore_index=2), fn(other, target, ignore_index=2)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)
        z = other.clone().requires_grad_()
        fn(z, target, ignore_index=2).backward()
        assert (z.grad[(target == 2).expand_as(z)] == 0).all()


# --------------------------------------------------------------------------------------------- precision / AMP
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_half_inputs_use_float32_maths(dtype, activation):
    logits = (torch.randn(2, 3, 8, 8, 4, generator=_gen(13)) * 4).to(dtype)
    target = torch.randint(0, 3, (2, 1, 8, 8, 4), generator=_gen(14))
    for kind, fn in MEEP.items():
        value = fn(logits, target, activation)
        assert value.dtype == torch.float32
        expected, _ = reference(logits, target, activation, kind)  # float64 on the same (rounded) logits
        assert value.item() == pytest.approx(expected, rel=2e-6, abs=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_amp = fn(logits, target, activation)
        assert under_amp.dtype == torch.float32
        assert under_amp.item() == pytest.approx(expected, rel=2e-6, abs=1e-6)


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 1, 5, 4\).*\(2, 3, 4, 4\)"):
        meep_kl(logits, torch.zeros(2, 1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="C = 3"):
        meep_kl(logits, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"softmax needs C >= 2.*sigmoid"):
        meep_entropy(torch.randn(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 3\).*\b3\b"):
        meep_kl(logits, torch.where(target == 0, 3, target))
    with pytest.raises(ValueError, match=r"\[0, 3\).*-1"):
        meep_kl(logits, torch.where(target == 0, -1, target))
    with pytest.raises(ValueError, match="integer"):
        meep_kl(logits, target.float() + 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        meep_kl(torch.randn(2, 1, 4, 4), torch.full((2, 1, 4, 4), 2.0), "sigmoid")
    bad = logits.clone()
    bad[0, 1, 2, 2] = float("nan")
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="2 non-finite"):
        meep_entropy(bad, target)
    with pytest.raises(ValueError, match="non-finite"):
        mean_entropy(bad)
    with pytest.raises(ValueError, match="activation"):
        meep_kl(logits, target, activation="softplus")
    with pytest.raises(ValueError, match="kind"):
        regulariser_sum_count(logits, target, kind="renyi")
    with pytest.raises(ValueError, match="spatial"):
        meep_kl(torch.randn(2, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="floating"):
        meep_kl(target, target)
    with pytest.raises(ValueError, match="needs a target"):
        mean_entropy(logits, ignore_index=2)


def test_ignore_index_labels_pass_validation_and_validate_off_skips_checks():
    logits = torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 3, (2, 1, 4, 4))  # label 2 >= C is fine once ignored
    assert torch.isfinite(meep_kl(logits, target, ignore_index=2))
    assert torch.isfinite(meep_kl(logits, torch.full_like(target, -100), ignore_index=-100))
    bad = logits.clone()
    bad[0, 0, 0, 0] = float("nan")
    meep_kl(bad, target, ignore_index=2, validate=False)  # no host sync, no check: the caller asked for speed


def test_traces_under_torch_compile_fullgraph():
    """No data-dependent Python branch: dynamo traces the whole function into one graph."""
    fn = torch.compile(
        lambda z, y: meep_kl(z, y, validate=False) - meep_entropy(z, y, validate=False), fullgraph=True, backend="eager"
    )
    logits = torch.randn(2, 3, 4, 4, generator=_gen(15))
    target = torch.randint(0, 3, (2, 1, 4, 4), generator=_gen(16))
    expected = meep_kl(logits, target) - meep_entropy(logits, target)
    torch.testing.assert_close(fn(logits, target), expected)
    perfect = torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float() * 10
    assert fn(perfect, target).item() == 0.0


@pytest.mark.gpu
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_cuda_matches_cpu(activation):
    logits = torch.randn(2, 3, 16, 16, 8, generator=_gen(17)) * 3
    target = torch.randint(0, 4, (2, 1, 16, 16, 8), generator=_gen(18))
    for fn in (meep_entropy, meep_kl):
        cpu = fn(logits, target, activation, ignore_index=3)
        cuda = fn(logits.cuda().bfloat16(), target.cuda(), activation, ignore_index=3)
        ref = fn(logits.bfloat16(), target, activation, ignore_index=3)
        assert cuda.dtype == torch.float32 and cuda.device.type == "cuda"
        assert cuda.item() == pytest.approx(ref.item(), rel=1e-5)
        assert torch.isfinite(cpu)


def test_fused_hook_is_the_only_dispatch_point(monkeypatch):
    """A registered fused implementation gets CUDA tensors only; CPU tensors stay on the reference path."""
    import monai_meep.losses.functional as functional

    calls = []
    monkeypatch.setattr(functional, "_FUSED_SUM_COUNT", lambda *args: calls.append(args))
    logits, target = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    assert torch.isfinite(meep_kl(logits, target))
    assert calls == []


@pytest.mark.gpu
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_fused_kernel_through_the_hook_matches_reference(monkeypatch, activation):
    fused = pytest.importorskip("monai_meep.kernels.meep_fused")
    import monai_meep.losses.functional as functional

    logits = (torch.randn(2, 3, 16, 16, 8, generator=_gen(19)) * 3).cuda()
    target = torch.randint(0, 4, (2, 1, 16, 16, 8), generator=_gen(20)).cuda()
    for fn in (meep_entropy, meep_kl):
        z_ref = logits.clone().requires_grad_()
        ref = fn(z_ref, target, activation, ignore_index=3)
        ref.backward()
        with monkeypatch.context() as m:
            m.setattr(functional, "_FUSED_SUM_COUNT", fused.fused_sum_count)
            z = logits.clone().requires_grad_()
            out = fn(z, target, activation, ignore_index=3)
            out.backward()
        assert out.item() == pytest.approx(ref.item(), rel=1e-5)
        torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-4, atol=1e-7)


def test_use_fused_kernel_is_opt_in_and_leaves_cpu_tensors_on_the_reference_path():
    from monai_meep.losses import functional

    pytest.importorskip("triton")
    assert functional._FUSED_SUM_COUNT is None  # off by default
    logits = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 5, 4))
    expected = meep_kl(logits, target)
    try:
        assert functional.use_fused_kernel(True) is True
        assert functional._FUSED_SUM_COUNT is not None
        torch.testing.assert_close(meep_kl(logits, target), expected)  # CPU tensors never take the kernel
    finally:
        assert functional.use_fused_kernel(False) is False
    assert functional._FUSED_SUM_COUNT is None
