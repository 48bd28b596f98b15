"""Property-based tests of the MEEP regularisers: random shapes, dtypes, ignore_index, extreme logits (issue 14)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from meep_reference import reference

from monai_meep.losses import meep_entropy, meep_kl

FNS = {"meep_kl": meep_kl, "meep_entropy": meep_entropy}


@st.composite
def cases(draw):
    activation = draw(st.sampled_from(["softmax", "sigmoid"]))
    c = draw(st.integers(2, 4)) if activation == "softmax" else draw(st.integers(1, 3))
    b = draw(st.integers(1, 2))
    spatial = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e4]))  # near-uniform to saturated logits
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, c, *spatial, generator=g, dtype=torch.float64) * scale).to(dtype)
    logits = torch.nan_to_num(logits)  # fp16 overflow to inf is not the property under test
    n_labels = 2 if activation == "sigmoid" and c == 1 else c
    target = torch.randint(0, n_labels, (b, 1, *spatial), generator=g)
    ignore = draw(st.sampled_from([None, n_labels]))  # an extra label, as WMH label 2
    if ignore is not None:
        target = torch.where(torch.rand(target.shape, generator=g) < 0.3, ignore, target)
    return logits, target, activation, ignore


@given(cases(), st.sampled_from(["meep_kl", "meep_entropy"]))
def test_regulariser_nonnegative_and_matches_float64_reference(case, kind):
    logits, target, activation, ignore = case
    value = FNS[kind](logits, target, activation, ignore)
    assert torch.isfinite(value) and value.item() >= 0.0
    expected, _ = reference(logits.float(), target, activation, kind, ignore)  # the loss computes in float32
    assert abs(value.item() - expected) <= 1e-4 * max(1.0, abs(expected))


@given(cases(), st.sampled_from(["meep_kl", "meep_entropy"]))
def test_nothing_misclassified_gives_exact_zero_and_zero_gradient(case, kind):
    logits, _, activation, ignore = case
    logits = logits.float().requires_grad_()
    if activation == "softmax":
        target = logits.detach().argmax(1, keepdim=True)  # the prediction itself: W is empty
    elif logits.shape[1] == 1:
        target = (logits.detach() > 0).long()
    else:
        target = (logits.detach() > 0).float()  # multi-hot, one label per channel
    value = FNS[kind](logits, target, activation)
    value.backward()
    assert value.item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0
