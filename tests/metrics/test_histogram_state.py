"""A histogram state from a corrupt or hand-edited checkpoint is refused, naming the key, and leaves the histogram
unchanged; bin-count and dtype messages say what the user passed (issue 14)."""

from __future__ import annotations

import pytest
import torch

from monai_meep.metrics import CalibrationHistogram, calibration_error, reliability_curve
from monai_meep.metrics.conventions import probability_sum_tolerance as sum_tolerance

from .test_histogram import _data


def _filled(c=3, s_bins=30):
    probs, target, mask = _data(c=c)
    return CalibrationHistogram(c, num_sub_bins=s_bins).update(probs, target, mask=mask)


def _edit(state, key, fn):
    state = dict(state)
    state[key] = fn(state[key])
    return state


def _neg(t):
    t = t.clone()
    t.view(-1)[0] = -4096
    return t


def _above_counts(t):
    return t + 1_000_000


BAD_STATES = [
    ("counts", _neg, ValueError, "negative"),
    ("top_counts", _neg, ValueError, "negative"),
    ("positives", _above_counts, ValueError, "positives.*exceeds.*counts"),
    ("top_correct", _above_counts, ValueError, "top_correct.*exceeds"),
    ("prob_sums", lambda t: t * 0 + float("nan"), ValueError, "NaN or inf"),
    ("brier_sums", lambda t: -t - 1, ValueError, "negative sums"),
    ("prob_sums", lambda t: t + 1e6, ValueError, "prob_sums.*exceeds"),
    ("counts", lambda t: t[:, :-1], ValueError, "shape"),
    ("counts", lambda t: t.double(), TypeError, "integer"),
    ("prob_sums", lambda t: t.long(), TypeError, "floating"),
    ("nll_sum", lambda t: float(t), TypeError, "torch.Tensor"),
    ("num_classes", lambda v: "3", TypeError, "num_classes"),
    ("num_sub_bins", lambda v: 30.0, TypeError, "num_sub_bins"),
]


@pytest.mark.parametrize("key, fn, exc, msg", BAD_STATES, ids=[f"{k}-{m}" for k, _, _, m in BAD_STATES])
def test_bad_state_refused_and_state_unchanged(key, fn, exc, msg):
    h = _filled()
    before = h.state_dict()
    target = CalibrationHistogram(3, num_sub_bins=30).update(*_data(c=3, seed=5)[:2])
    kept = target.state_dict()
    with pytest.raises(exc, match=msg) as info:
        target.load_state_dict(_edit(before, key, fn))
    assert repr(key) in str(info.value)
    for k, v in kept.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(getattr(target, k), v), k


def test_inconsistent_class_totals_refused():
    state = _filled().state_dict()
    counts = state["counts"].clone()
    counts[1, 0] += 1  # class 1 saw one voxel more than class 0: no update does that
    with pytest.raises(ValueError, match="counted once per class"):
        CalibrationHistogram(3, num_sub_bins=30).load_state_dict({**state, "counts": counts})


@pytest.mark.parametrize("key", ["counts", "nll_sum", "num_sub_bins"])
def test_missing_key_named(key):
    state = _filled().state_dict()
    del state[key]
    with pytest.raises(ValueError, match=f"'{key}'"):
        CalibrationHistogram(3, num_sub_bins=30).load_state_dict(state)
    with pytest.raises(TypeError, match="mapping"):
        CalibrationHistogram(3, num_sub_bins=30).load_state_dict([1, 2])


def test_valid_state_round_trips():
    h = _filled()
    again = CalibrationHistogram(3, num_sub_bins=30).load_state_dict(h.state_dict())
    for k, v in h.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(getattr(again, k), v), k
    assert int(again.num_voxels) == int(h.num_voxels) > 0


def test_num_bins_zero_names_num_bins():
    probs, target, _ = _data(c=2)
    for fn in (calibration_error, reliability_curve):
        with pytest.raises(ValueError, match="num_bins must be >= 1, got 0"):
            fn(probs, target, num_bins=0)
        with pytest.raises(TypeError, match="num_bins must be an int"):
            fn(probs, target, num_bins="15")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_softmax_passes_the_sum_check(dtype):
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(2, 3, 16, 16, generator=g)
    probs = torch.softmax(logits.to(dtype), dim=1)  # rounded per channel: sums miss 1 by up to ~C * eps / 2
    target = torch.randint(0, 3, (2, 1, 16, 16), generator=g)
    dev = (probs.double().sum(1) - 1).abs().max().item()
    assert dev > 1e-3 or dtype is torch.float16  # bf16 really exceeds the float32 tolerance
    h = CalibrationHistogram(3).update(probs, target)
    assert int(h.num_voxels) == 2 * 16 * 16
    with pytest.raises(ValueError, match="sum to 1"):  # logits still fail in half precision
        CalibrationHistogram(3).update(logits.to(dtype).sigmoid(), target)


def test_sum_tolerance_follows_dtype():
    assert sum_tolerance(torch.float32, 3) == 1e-3
    assert sum_tolerance(torch.float64, 3, 1e-6) == 1e-6
    assert sum_tolerance(torch.bfloat16, 3) == 3 * 2**-7
    assert sum_tolerance(torch.float16, 2) == 2 * 2**-10


def test_empty_batch_gives_an_empty_table_in_the_metric():
    from monai_meep.metrics import ExpectedCalibrationErrorMetric

    probs, target, _ = _data(c=2)
    for kwargs, k in (({}, 1), ({"include_background": True}, 2), ({"mode": "top_label"}, 1)):
        m = ExpectedCalibrationErrorMetric(**kwargs)
        rows = m(probs[:0], target[:0])
        assert rows.shape == (0, k) and rows.dtype == torch.float64
        m(probs, target)
        torch.testing.assert_close(m.aggregate(reduction="none"), m.get_buffer())  # the empty batch added no row
        assert m.get_buffer().shape == (probs.shape[0], k)
    with pytest.raises(ValueError, match="batch size 0"):
        ExpectedCalibrationErrorMetric()(probs[:0], target)
