"""Fused MEEP kernel vs the PyTorch reference (``_reference_sum_count``), gradcheck and edge cases.

Odd spatial sizes (7 x 5 x 3, 33 x 17: not multiples of any block size), both activations, both kinds (and the
all-voxel entropy), float32 / bfloat16 / float16, ignore_index, one-hot targets, an empty error set. Runs on the
Triton CPU interpreter without CUDA (see conftest.py), skips without triton.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from monai_meep.kernels import fused_meep_regularizer, fused_sum_count, triton_available
from monai_meep.losses.functional import _prepare, _reference_sum_count, meep_entropy, meep_kl

SHAPES = [(7, 5, 3), (33, 17)]


def _case(activation: str, c: int, spatial, target_kind: str, seed: int, ignore: int | None):
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(2, c, *spatial, generator=g)
    if target_kind == "index":
        hi = 2 if (activation == "sigmoid" and c == 1) else c
        if ignore is not None:
            hi = max(hi, ignore + 1)  # the ignored label appears among the others
        target = torch.randint(0, hi, (2, 1, *spatial), generator=g)
    elif target_kind == "onehot":
        idx = torch.randint(0, c, (2, *spatial), generator=g)
        target = torch.nn.functional.one_hot(idx, c).movedim(-1, 1).to(torch.float32)
    else:  # multi-label
        target = torch.randint(0, 2, (2, c, *spatial), generator=g).to(torch.float32)
    return logits, target


def _reference(logits, target, activation, ignore, kind):
    work, tgt = _prepare(logits, target, activation)
    return _reference_sum_count(work, tgt, activation, ignore, kind)


CASES = [
    # activation, C, target kind, ignore_index
    ("softmax", 3, "index", None),
    ("softmax", 2, "index", 2),
    ("softmax", 4, "onehot", None),
    ("softmax", 3, "onehot", 0),
    ("sigmoid", 1, "index", None),
    ("sigmoid", 1, "index", 2),
    ("sigmoid", 3, "multilabel", None),
    ("sigmoid", 3, "index", 3),
    ("sigmoid", 3, "onehot", -1),
]


@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl", "confidence_penalty"])
@pytest.mark.parametrize("activation,c,target_kind,ignore", CASES)
def test_value_and_grad_match_reference_fp32(device, kind, activation, c, target_kind, ignore):
    spatial = SHAPES[(c + len(kind)) % 2]
    logits, target = _case(activation, c, spatial, target_kind, seed=c * 7 + len(kind), ignore=ignore)
    z_ref = logits.clone().requires_grad_(True)
    z = logits.to(device).requires_grad_(True)
    total, count = fused_sum_count(z, target.to(device), activation, ignore, kind)
    ref_total, ref_count = _reference(z_ref, target, activation, ignore, kind)
    assert total.dtype == torch.float32 and count.dtype == torch.int64
    assert int(count) == int(ref_count) > 0
    torch.testing.assert_close(total.cpu(), ref_total.detach(), rtol=2e-6, atol=1e-5)
    (total * 0.37).backward()
    (ref_total * 0.37).backward()
    torch.testing.assert_close(z.grad.cpu(), z_ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "activation,c,kind", [("softmax", 3, "meep_kl"), ("sigmoid", 1, "meep_entropy"), ("softmax", 2, "meep_entropy")]
)
def test_half_precision_inputs(device, dtype, activation, c, kind):
    """bf16 / fp16 logits: float32 maths inside, the gradient comes back in the logits' dtype."""
    logits, target = _case(activation, c, (33, 17), "index", seed=11, ignore=2)
    logits = logits.to(dtype)
    z_ref = logits.clone().requires_grad_(True)
    z = logits.to(device).requires_grad_(True)
    value = fused_meep_regularizer(z, target.to(device), kind, activation, ignore_index=2)
    ref = (meep_kl if kind == "meep_kl" else meep_entropy)(z_ref, target, activation, ignore_index=2)
    assert value.dtype == torch.float32
    # same float32 maths on the same (exactly upcast) inputs: only summation order differs
    torch.testing.assert_close(value.cpu(), ref.detach(), rtol=1e-5, atol=1e-6)
    value.backward()
    ref.backward()
    assert z.grad.dtype == dtype
    torch.testing.assert_close(z.grad.cpu().float(), z_ref.grad.float(), rtol=1e-2, atol=1e-5)


@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl"])
@pytest.mark.parametrize("activation,c", [("softmax", 3), ("sigmoid", 2)])
def test_gradcheck_float64(device, kind, activation, c):
    """Finite differences on the fused autograd Function itself (float64 maths in the kernel)."""
    logits, target = _case(activation, c, (4, 3), "index", seed=3, ignore=None)
    z = logits.double().to(device).requires_grad_(True)
    t = target.to(device)
    assert torch.autograd.gradcheck(
        lambda x: fused_meep_regularizer(x, t, kind, activation), (z,), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True
    )


@pytest.mark.parametrize("activation,c", [("softmax", 3), ("sigmoid", 1), ("sigmoid", 2)])
def test_float64_matches_reference_tightly(device, activation, c):
    logits, target = _case(activation, c, (7, 5, 3), "index", seed=5, ignore=None)
    for kind in ("meep_entropy", "meep_kl"):
        total, count = fused_sum_count(logits.double().to(device), target.to(device), activation, None, kind)
        ref_total, ref_count = _reference(logits.double(), target, activation, None, kind)
        assert int(count) == int(ref_count)
        torch.testing.assert_close(total.cpu(), ref_total, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation,c", [("softmax", 3), ("sigmoid", 1)])
def test_empty_error_set_is_exactly_zero(device, activation, c):
    """|W| = 0 (every prediction right, or every wrong voxel ignored): exactly 0 and an exactly zero gradient."""
    g = torch.Generator().manual_seed(1)
    if activation == "softmax":
        target = torch.randint(0, c, (2, 1, 7, 5, 3), generator=g)
        logits = torch.nn.functional.one_hot(target[:, 0], c).movedim(-1, 1).float() * 4.0
    else:
        target = torch.randint(0, 2, (2, 1, 7, 5, 3), generator=g)
        logits = torch.where(target == 1, 3.0, -3.0)
    for kind in ("meep_entropy", "meep_kl"):
        z = logits.clone().to(device).requires_grad_(True)
        value = fused_meep_regularizer(z, target.to(device), kind, activation)
        value.backward()
        assert value.item() == 0.0
        assert torch.equal(z.grad.cpu(), torch.zeros_like(logits))
    # all wrong but all ignored
    z = (-logits).clone().to(device).requires_grad_(True)
    ignored = torch.full_like(target, 2)
    value = fused_meep_regularizer(z, ignored.to(device), "meep_kl", activation, ignore_index=2)
    value.backward()
    assert value.item() == 0.0 and not torch.isnan(z.grad).any() and z.grad.abs().max().item() == 0.0


def test_ties_follow_torch_argmax(device):
    """A tie in the logits predicts the first class, as ``torch.argmax``: uniform logits labelled 0 are right."""
    logits = torch.zeros(1, 3, 5, 3)
    target = torch.zeros(1, 1, 5, 3, dtype=torch.long)
    target[0, 0, 0] = 2  # 3 voxels wrong
    total, count = fused_sum_count(logits.to(device), target.to(device), "softmax", None, "meep_entropy")
    assert int(count) == 3
    torch.testing.assert_close(total.cpu(), torch.tensor(3 * torch.log(torch.tensor(3.0)).item()))


def test_bad_input_raises(device):
    z = torch.randn(2, 3, 4, 4, device=device)
    with pytest.raises(ValueError, match="does not match"):
        fused_sum_count(z, torch.zeros(2, 1, 4, 5, dtype=torch.long, device=device), "softmax", None, "meep_kl")
    with pytest.raises(ValueError, match="C >= 2"):
        fused_sum_count(z[:, :1], torch.zeros(2, 1, 4, 4, dtype=torch.long, device=device), "softmax", None, "meep_kl")
    with pytest.raises(ValueError, match="kind"):
        fused_meep_regularizer(z, torch.zeros(2, 1, 4, 4, dtype=torch.long, device=device), "confidence_penalty")


def test_triton_available(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert triton_available(torch.zeros(1)) is False
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_available(torch.zeros(1)) is True


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["meep_entropy", "meep_kl"])
def test_la_shaped_on_gpu(dtype, kind):
    """LA-sized logits (2 x 2 x 144 x 144 x 80) compiled on the GPU vs the reference on the same device."""
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = (3 * torch.randn(2, 2, 144, 144, 80, device="cuda", generator=g)).to(dtype)
    target = torch.randint(0, 2, (2, 1, 144, 144, 80), device="cuda", generator=g)
    z, z_ref = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    total, count = fused_sum_count(z, target, "softmax", None, kind)
    ref_total, ref_count = _reference(z_ref, target, "softmax", None, kind)
    assert int(count) == int(ref_count)
    torch.testing.assert_close(total, ref_total, rtol=1e-5, atol=1e-3)
    total.backward()
    ref_total.backward()
    torch.testing.assert_close(z.grad.float(), z_ref.grad.float(), rtol=1e-2 if dtype != torch.float32 else 1e-5,
                               atol=1e-6)  # fmt: skip
