# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""MEEPLoss on the CPU kernel as one autograd node (``loss_plus_regulariser``) vs the unfused sum on the reference.

The fused node runs the wrapped loss on a detached alias of the logits and adds the regulariser's gradient into the
wrapped loss's gradient in its backward. The reference is the PyTorch path (``MONAI_MEEP_NUMBA=0``: the regulariser
of ``_reference_sum_count``, float64-``gradcheck``-ed in tests/losses, plus the wrapped loss, summed by autograd);
value and gradient must agree to 1e-6, and the cases where the node must not be used must fall back and stay right.
"""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss, FocalLoss

pytest.importorskip("numba")

from monai_meep.losses import MEEPLoss
from monai_meep.losses.functional import loss_plus_regulariser

FUSED_NODE = "_LossPlusRegulariserBackward"


def _value_and_grad(loss, logits, target, grad_out=None):
    z = logits.detach().clone().requires_grad_(True)
    out = loss(z, target)
    out.backward(grad_out)
    return out.detach(), z.grad, out.grad_fn


def _both(loss, logits, target, monkeypatch, grad_out=None):
    fast = _value_and_grad(loss, logits, target, grad_out)
    with monkeypatch.context() as m:
        m.setenv("MONAI_MEEP_NUMBA", "0")
        ref = _value_and_grad(loss, logits, target, grad_out)
    return fast, ref


def _assert_close(fast, ref, tol=1e-6):
    (fv, fg, _), (rv, rg, _) = fast, ref
    assert fv.shape == rv.shape and fg.dtype == rg.dtype
    assert torch.allclose(fv.float(), rv.float(), rtol=tol, atol=tol)
    assert torch.allclose(fg.float(), rg.float(), rtol=0, atol=tol)


def _data(c, spatial=(7, 9, 5), labels=None, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(2, c, *spatial, generator=g)
    target = torch.randint(0, labels or max(c, 2), (2, 1, *spatial), generator=g)
    return logits, target


CASES = [
    ("softmax", 2, lambda: DiceLoss(softmax=True, to_onehot_y=True), None),
    ("softmax", 3, lambda: DiceCELoss(softmax=True, to_onehot_y=True), None),
    ("softmax", 3, lambda: FocalLoss(use_softmax=True, to_onehot_y=True), None),
    ("softmax", 3, lambda: DiceLoss(softmax=True, to_onehot_y=True, ignore_index=2), 2),
    ("sigmoid", 1, lambda: DiceLoss(sigmoid=True), None),
    ("sigmoid", 1, lambda: torch.nn.BCEWithLogitsLoss(), None),
]


@pytest.mark.parametrize(("activation", "c", "make_loss", "ignore"), CASES)
@pytest.mark.parametrize("regularizer", ["meep_kl", "meep_entropy"])
def test_fused_node_equals_the_unfused_reference(activation, c, make_loss, ignore, regularizer, monkeypatch):
    logits, target = _data(c)
    if activation == "sigmoid" and isinstance(make_loss(), torch.nn.BCEWithLogitsLoss):
        target = target.float()
    loss = MEEPLoss(make_loss(), regularizer, weight=0.7, ignore_index=ignore)
    fast, ref = _both(loss, logits, target, monkeypatch)
    assert type(fast[2]).__name__ == FUSED_NODE  # the CPU default is the fused node
    assert type(ref[2]).__name__ != FUSED_NODE
    _assert_close(fast, ref)
    assert set(loss.parts) == {"seg_loss", "regularizer", "error_fraction"}


def test_reduction_none_broadcasts_the_regulariser_over_the_loss(monkeypatch):
    # out_i = seg_i + w * KL_W: d L / d KL_W is w times the sum of the incoming gradient
    logits, target = _data(2)
    loss = MEEPLoss(DiceLoss(softmax=True, to_onehot_y=True, reduction="none"), "meep_kl", weight=0.5)
    grad_out = torch.linspace(-1.0, 2.0, 4).reshape(2, 2, 1, 1, 1)
    fast, ref = _both(loss, logits, target, monkeypatch, grad_out)
    assert type(fast[2]).__name__ == FUSED_NODE and fast[0].shape == (2, 2, 1, 1, 1)
    _assert_close(fast, ref)


@pytest.mark.parametrize("wrapped", ["sum", "clone"])
def test_a_wrapped_loss_whose_gradient_is_the_incoming_one(wrapped, monkeypatch):
    # z.sum()'s backward is an expand of the incoming gradient, z.clone()'s the incoming gradient itself, which
    # autograd also hands to the other branch of the sum below: the regulariser's gradient must not go into it in
    # place
    logits, target = _data(2)
    fn = (lambda z, y: z.sum()) if wrapped == "sum" else (lambda z, y: z.clone())
    loss = MEEPLoss(fn, "meep_kl", weight=1.0, activation="softmax")

    def twice(z, y):
        return loss(z, y) + 3.0 * loss(z, y)

    grad_out = None if wrapped == "sum" else torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    fast, ref = _both(twice, logits, target, monkeypatch, grad_out)
    _assert_close(fast, ref)


def test_bfloat16_logits(monkeypatch):
    logits, target = _data(2)
    loss = MEEPLoss(DiceLoss(softmax=True, to_onehot_y=True), "meep_kl", weight=0.5)
    fast, ref = _both(loss, logits.bfloat16(), target, monkeypatch)
    assert fast[1].dtype == torch.bfloat16 and type(fast[2]).__name__ == FUSED_NODE
    # the two paths round the sum of two bfloat16-sized gradients differently: one bfloat16 step (2^-8 relative)
    _assert_close(fast, ref, tol=float(fast[1].float().abs().max()) * 2**-7)


def test_empty_error_set_leaves_the_wrapped_loss_gradient(monkeypatch):
    target = torch.randint(0, 2, (2, 1, 6, 5, 4), generator=torch.Generator().manual_seed(3))
    logits = torch.cat([1.0 - 2.0 * target, 2.0 * target - 1.0], dim=1).float() * 4.0  # always right
    loss = MEEPLoss(DiceLoss(softmax=True, to_onehot_y=True), "meep_kl", weight=1.0)
    fast, ref = _both(loss, logits, target, monkeypatch)
    _assert_close(fast, ref)
    assert float(loss.parts["regularizer"]) == 0.0 and float(loss.parts["error_fraction"]) == 0.0
    z = logits.clone().requires_grad_(True)
    DiceLoss(softmax=True, to_onehot_y=True)(z, target).backward()
    assert torch.equal(fast[1], z.grad)


class _LearnedScale(torch.nn.Module):
    """A wrapped loss with a trainable parameter: the fused node returns no gradient for it, so it must not be used."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.5))
        self.dice = DiceLoss(softmax=True, to_onehot_y=True)

    def forward(self, z, y):
        return self.scale * self.dice(z, y)


def test_falls_back_where_the_fused_node_would_be_wrong_or_useless(monkeypatch):
    logits, target = _data(2)
    learned = _LearnedScale()
    loss = MEEPLoss(learned, "meep_kl", weight=0.5, activation="softmax")
    fast, ref = _both(loss, logits, target, monkeypatch)
    assert type(fast[2]).__name__ != FUSED_NODE
    _assert_close(fast, ref)
    assert learned.scale.grad is not None and float(learned.scale.grad) != 0.0
    plain = MEEPLoss(DiceLoss(softmax=True, to_onehot_y=True), "meep_kl", weight=0.5)
    with torch.no_grad():  # validation: no graph, the unfused path, the same value
        value = plain(logits, target)
    assert torch.allclose(value, fast[0] * 0 + plain(logits.clone().requires_grad_(True), target).detach())
    assert value.grad_fn is None
    out = plain(logits, target)  # logits without gradient
    assert out.grad_fn is None


def test_second_backward_is_refused_with_the_way_out():
    logits, target = _data(2)
    z = logits.clone().requires_grad_(True)
    out = MEEPLoss(DiceLoss(softmax=True, to_onehot_y=True), "meep_kl")(z, target)
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="MONAI_MEEP_NUMBA=0"):
        out.backward()


def test_bad_labels_raise_before_the_wrapped_loss_runs():
    logits, target = _data(3)
    target[0, 0, 0, 0, 0] = 7
    calls = []

    def spy(z, y):
        calls.append(1)
        return z.sum()

    with pytest.raises(ValueError, match="integer labels in \\[0, 3\\)"):
        MEEPLoss(spy, "meep_kl", activation="softmax")(logits.requires_grad_(True), target)
    assert calls == []


def test_a_wrapped_loss_returning_a_non_tensor_is_refused():
    logits, target = _data(2)
    with pytest.raises(TypeError, match="must return a tensor"):
        loss_plus_regulariser(lambda z, y: 1.0, logits.requires_grad_(True), target)
