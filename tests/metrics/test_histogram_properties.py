"""Property-based tests of CalibrationHistogram: merge is associative and equals one pass, the state round-trips,
a rejected update leaves the state unchanged (issue 14)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from monai_meep.metrics import CalibrationHistogram

S_BINS = 30


@st.composite
def batches(draw, n=3):
    c = draw(st.integers(2, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=2)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    scale = draw(st.sampled_from([0.1, 3.0, 50.0]))
    use_mask = draw(st.booleans())
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    out = []
    for _ in range(n):
        b = draw(st.integers(1, 2))
        probs = torch.softmax(torch.randn(b, c, *spatial, generator=g, dtype=torch.float64) * scale, 1).to(dtype)
        target = torch.randint(0, c, (b, 1, *spatial), generator=g)
        mask = torch.rand(b, 1, *spatial, generator=g) > 0.3 if use_mask else None
        out.append((probs, target, mask))
    return c, out


def _hist(c, items):
    h = CalibrationHistogram(c, num_sub_bins=S_BINS)
    for p, t, m in items:
        h.update(p, t, mask=m)
    return h


def _assert_same(a, b):
    for k, v in a.state_dict().items():
        w = b.state_dict()[k]
        if isinstance(v, torch.Tensor) and not v.is_floating_point():
            assert torch.equal(v, w), k
        elif isinstance(v, torch.Tensor):
            torch.testing.assert_close(v, w, rtol=1e-12, atol=1e-12, msg=k)
        else:
            assert v == w, k


@given(batches())
def test_merge_is_associative_and_equals_one_pass(data):
    c, (x, y, z) = data
    hx, hy, hz = _hist(c, [x]), _hist(c, [y]), _hist(c, [z])
    left = hx.clone().merge(hy).merge(hz)
    right = hx.clone().merge(hy.clone().merge(hz))
    _assert_same(left, right)
    _assert_same(left, _hist(c, [x, y, z]))


@given(batches(n=1))
def test_state_round_trips(data):
    c, items = data
    h = _hist(c, items)
    _assert_same(CalibrationHistogram(c, num_sub_bins=S_BINS).load_state_dict(h.state_dict()), h)


@given(batches(n=1), st.sampled_from(["nan", "above_one", "label", "shape", "sum"]))
def test_rejected_update_leaves_state_unchanged(data, how):
    c, [(p, t, m)] = data
    h = _hist(c, [(p, t, m)])
    before = h.state_dict()
    bad_p, bad_t = p.clone(), t.clone()
    if how == "nan":
        bad_p.view(-1)[-1] = float("nan")
    elif how == "above_one":
        bad_p.view(-1)[0] = 1.5
    elif how == "label":
        bad_t.view(-1)[-1] = c
        m = None  # the bad label must be scored to be refused
    elif how == "shape":
        bad_t = bad_t[..., :0]
    else:
        bad_p = bad_p * 0.5
    with pytest.raises(ValueError):
        h.update(bad_p, bad_t, mask=m if how != "shape" else None)
    _assert_same(h, CalibrationHistogram(c, num_sub_bins=S_BINS).load_state_dict(before))
