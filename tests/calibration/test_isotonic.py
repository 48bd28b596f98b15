"""Isotonic calibration on the streaming histogram against scikit-learn's IsotonicRegression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.isotonic import IsotonicRegression

from benchmarks.bench_isotonic import exact_pav
from monai_meep.calibration import IsotonicCalibration
from monai_meep.calibration.isotonic import pool_adjacent_violators
from monai_meep.metrics.calibration import calibration_error


def _ir(x, y, w=None) -> IsotonicRegression:
    return IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=w)


def test_pav_matches_sklearn_on_weighted_points():
    rng = np.random.default_rng(0)
    x = np.sort(rng.random(400))
    den = rng.integers(1, 50, size=400).astype(float)
    num = rng.binomial(den.astype(int), np.clip(x + 0.3 * rng.normal(size=400), 0, 1)).astype(float)
    start, end, val = pool_adjacent_violators(num, den)
    fitted = np.repeat(val, end - start + 1)
    ref = _ir(x, num / den, den).predict(x)
    np.testing.assert_allclose(fitted, ref, atol=1e-12)
    assert np.all(np.diff(val) > 0)


def _probs(n, seed, sharpen=3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64) * 2
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(z)).long()
    return torch.sigmoid(sharpen * z), y


@pytest.mark.parametrize("num_sub_bins", [600, 6000])
def test_exact_for_binned_data(num_sub_bins):
    """Equal to scikit-learn fitted after moving every probability by < 1 sub-bin (to its sub-bin's mean)."""
    p, y = _probs(20_000, seed=1)
    cal = IsotonicCalibration(1, activation="sigmoid", input_type="probs", num_sub_bins=num_sub_bins)
    cal.update(p.view(1, 1, -1), y.view(1, 1, -1)).fit()
    sub = (p * num_sub_bins).floor().clamp(max=num_sub_bins - 1).long()
    cnt = torch.bincount(sub, minlength=num_sub_bins).double()
    mean = torch.zeros(num_sub_bins, dtype=torch.float64).index_add_(0, sub, p) / cnt
    moved = mean[sub]
    assert ((moved - p).abs() < 1.0 / num_sub_bins).all()
    ref = _ir(moved.numpy(), y.numpy())
    grid = np.linspace(0, 1, 20_001)
    ours = cal(torch.tensor(grid).view(1, 1, -1))[0, 0].numpy()
    np.testing.assert_allclose(ours, ref.predict(grid), atol=1e-12)


def test_close_to_sklearn_on_raw_voxels():
    """On continuous data the curves differ only through the sub-bin quantisation (measured, see docs)."""
    p, y = _probs(50_000, seed=2)
    cal = IsotonicCalibration(1, activation="sigmoid", input_type="probs").update(p.view(1, 1, -1), y.view(1, 1, -1))
    cal.fit()
    q, _ = _probs(50_000, seed=3)
    d = np.abs(cal(q.view(1, 1, -1))[0, 0].numpy() - _ir(p.numpy(), y.numpy()).predict(q.numpy()))
    assert d.mean() < 0.006 and np.quantile(d, 0.9) < 0.01  # measured: mean 0.0025, p90 0.0074, max 0.031


def test_reduces_ece_and_stays_monotone(binary_data):
    fit_x, fit_y, _ = binary_data(100_000, seed=4, sharpen=4.0, shift=1.0)
    test_x, test_y, _ = binary_data(100_000, seed=5, sharpen=4.0, shift=1.0)
    cal = IsotonicCalibration(2).update(fit_x, fit_y).fit()
    out = cal(test_x)
    before = calibration_error(torch.softmax(test_x, 1), test_y).item()
    after = calibration_error(out, test_y).item()
    assert before > 0.08 and after < 0.012 and after < before / 6
    torch.testing.assert_close(out.sum(1), torch.ones_like(out[:, 0]))
    fg = torch.softmax(test_x, 1)[:, 1].reshape(-1)
    order = torch.argsort(fg)
    assert (torch.diff(out[:, 1].reshape(-1)[order]) >= -1e-7).all()  # non-decreasing in the input


def test_multiclass_renormalised(multiclass_data):
    logits, y = multiclass_data(30_000, seed=6, num_classes=3, sharpen=3.0)
    cal = IsotonicCalibration(3).update(logits, y).fit()
    assert len(cal.x_points) == 3
    test_x, test_y = multiclass_data(30_000, seed=7, num_classes=3, sharpen=3.0)
    out = cal(test_x)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-6, rtol=0)
    before = calibration_error(torch.softmax(test_x, 1), test_y, include_background=True).mean().item()
    after = calibration_error(out, test_y, include_background=True).mean().item()
    assert after < before / 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pav_equals_the_exact_integer_pav(seed):
    """SciPy's blocks with recomputed values equal the exact integer-ratio PAV the package had before (also timed in
    benchmarks/bench_isotonic.py), ties included (many equal ratios with small integer weights)."""
    rng = np.random.default_rng(seed)
    den = rng.integers(1, 4, size=3000).astype(float)
    num = rng.binomial(den.astype(int), np.linspace(0.2, 0.8, 3000)).astype(float)
    s0, e0, v0 = exact_pav(num, den)
    s1, e1, v1 = pool_adjacent_violators(num, den)
    np.testing.assert_array_equal(s1, s0)
    np.testing.assert_array_equal(e1, e0)
    np.testing.assert_allclose(v1, v0, rtol=0, atol=1e-12)
