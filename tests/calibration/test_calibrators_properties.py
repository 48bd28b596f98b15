"""Property-based tests of the calibrators: outputs are probabilities, the saved state round-trips, a rejected
update or state leaves the calibrator unchanged (issue 14)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from monai_meep.calibration import IsotonicCalibration, PlattScaling, TemperatureScaling

KINDS = [PlattScaling, IsotonicCalibration, TemperatureScaling]


@st.composite
def fitted(draw):
    cls = draw(st.sampled_from(KINDS))
    c = draw(st.integers(2, 3))
    sharpen = draw(st.sampled_from([0.3, 1.0, 4.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    z = torch.randn(2, c, 20, 10, generator=g) * 2
    y = torch.multinomial(torch.softmax(z, 1).movedim(1, -1).reshape(-1, c), 1, generator=g).reshape(2, 1, 20, 10)
    use_mask = draw(st.booleans())
    mask = torch.rand(2, 1, 20, 10, generator=g) > 0.2 if use_mask else None
    kwargs = {"sample_size": 500} if cls is TemperatureScaling else {}
    cal = cls(c, **kwargs).update(z * sharpen, y, mask=mask).fit()
    scale = draw(st.sampled_from([1e-3, 1.0, 100.0]))  # extreme test logits
    x = torch.randn(1, c, 6, 5, generator=g) * scale
    return cal, x


@given(fitted())
def test_outputs_are_probabilities_and_state_round_trips(data):
    cal, x = data
    q = cal(x)
    assert torch.isfinite(q).all() and q.min() >= 0 and q.max() <= 1
    torch.testing.assert_close(q.sum(1), torch.ones_like(q[:, 0]), atol=1e-5, rtol=0)
    again = type(cal)(cal.num_classes, **{k: v for k, v in cal.get_config().items()}).load_state_dict(cal.state_dict())
    torch.testing.assert_close(again(x), q, rtol=0, atol=0)


@given(fitted(), st.sampled_from(["nan_update", "bad_state"]))
def test_rejection_leaves_the_calibrator_unchanged(data, how):
    cal, x = data
    before, state = cal(x), cal.state_dict()
    if how == "nan_update":
        bad = x.clone()
        bad.view(-1)[0] = float("nan")
        with pytest.raises(ValueError):
            cal.update(bad, torch.zeros(1, 1, 6, 5, dtype=torch.long))
    else:
        broken = dict(state, params={k: "garbage" for k in state["params"]})
        with pytest.raises((TypeError, ValueError)):
            cal.load_state_dict(broken)
    torch.testing.assert_close(cal(x), before, rtol=0, atol=0)
    assert cal.state_dict()["params"] == state["params"]
