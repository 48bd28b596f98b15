"""Temperature scaling against float64 full-batch references; T ~ 1 on calibrated data; the uniform sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

from monai_meep.calibration import TemperatureScaling
from monai_meep.calibration.temperature import _BottomKSample
from monai_meep.metrics.calibration import calibration_error


def _softmax_nll_ref(z: np.ndarray, y: np.ndarray) -> float:
    """Temperature by float64 full-batch L-BFGS over log T (independent parameterisation)."""

    def f(v):
        s = z / np.exp(v[0])
        m = s.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(s - m).sum(1))
        return np.mean(lse - s[np.arange(len(y)), y])

    return float(np.exp(minimize(f, [0.0], method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15}).x[0]))


def test_binary_matches_scalar_reference(binary_data):
    logits, y, _ = binary_data(40_000, seed=0, sharpen=2.5, shift=0.0)
    cal = TemperatureScaling(2).update(logits, y).fit()
    z = (logits[:, 1] - logits[:, 0]).double().reshape(-1).numpy()
    t = y.reshape(-1).numpy()
    ref = minimize_scalar(
        lambda T: np.mean(np.logaddexp(0, z / T) - t * z / T),
        bounds=(0.1, 10),
        method="bounded",
        options={"xatol": 1e-10},
    ).x
    assert cal.temperature == pytest.approx(ref, rel=1e-4)  # binned on a 0.01 logit grid; measured ~1e-7
    assert cal.temperature == pytest.approx(2.5, rel=0.05)  # recovers the sharpening factor


@pytest.mark.parametrize("num_classes", [3, 5])
def test_multiclass_matches_lbfgs(multiclass_data, num_classes):
    logits, y = multiclass_data(20_000, seed=num_classes, num_classes=num_classes, sharpen=2.0)
    cal = TemperatureScaling(num_classes).update(logits[:1], y[:1]).update(logits[1:], y[1:]).fit()
    z = logits.double().movedim(1, -1).reshape(-1, num_classes).numpy()
    ref = _softmax_nll_ref(z, y.reshape(-1).numpy())
    assert cal.fit_info["sample_size"] == 20_000  # small data: the sample holds every voxel, the fit is exact
    assert cal.temperature == pytest.approx(ref, rel=1e-6)
    assert cal.temperature == pytest.approx(2.0, rel=0.05)


def test_calibrated_data_gives_t_close_to_one(binary_data, multiclass_data):
    logits, y, _ = binary_data(100_000, seed=11, sharpen=1.0, shift=0.0)
    assert TemperatureScaling(2).update(logits, y).fit().temperature == pytest.approx(1.0, abs=0.03)
    sig = TemperatureScaling(1, activation="sigmoid").update(logits[:, 1:2], y).fit()
    assert sig.temperature == pytest.approx(1.0, abs=0.03)
    logits, y = multiclass_data(60_000, seed=12, num_classes=4, sharpen=1.0)
    assert TemperatureScaling(4).update(logits, y).fit().temperature == pytest.approx(1.0, abs=0.03)


def test_reduces_ece_on_held_out(multiclass_data):
    fit_x, fit_y = multiclass_data(40_000, seed=13, num_classes=3, sharpen=3.0)
    test_x, test_y = multiclass_data(40_000, seed=14, num_classes=3, sharpen=3.0)
    cal = TemperatureScaling(3).update(fit_x, fit_y).fit()
    out = cal(test_x)
    torch.testing.assert_close(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-6, rtol=0)
    before = calibration_error(torch.softmax(test_x, 1), test_y, mode="top_label").item()
    after = calibration_error(out, test_y, mode="top_label").item()
    assert before > 0.08 and after < 0.015 and after < before / 6


def test_probability_input_matches_logits(multiclass_data):
    logits, y = multiclass_data(10_000, seed=15, num_classes=3, sharpen=2.0)
    a = TemperatureScaling(3).update(logits, y).fit()
    b = TemperatureScaling(3, input_type="probs").update(torch.softmax(logits, 1), y).fit()
    assert a.temperature == pytest.approx(b.temperature, rel=1e-5)  # softmax(log p / T) == softmax(z / T)
    torch.testing.assert_close(a(logits), b(torch.softmax(logits, 1)), atol=1e-5, rtol=0)


def test_sample_is_bounded_uniform_and_mergeable():
    rows = torch.arange(10_000, dtype=torch.float32).unsqueeze(1)
    labels = torch.zeros(10_000, dtype=torch.long)
    s = _BottomKSample(500, seed=0)
    for chunk in range(10):
        s.update(rows[chunk * 1000 : (chunk + 1) * 1000], labels[:1000])
    assert s.rows.shape == (500, 1) and s.seen == 10_000
    assert len(torch.unique(s.rows)) == 500  # without replacement
    # uniform over the stream: the mean index is ~ 5000 (sd of the mean ~ 2887 / sqrt(500) ~ 130)
    assert abs(s.rows.mean().item() - 4999.5) < 5 * 130
    # bottom-k: the kept keys are the 500 smallest of all keys drawn, whatever the batching
    t = _BottomKSample(500, seed=0)
    t.update(rows, labels)
    torch.testing.assert_close(torch.sort(s.keys).values, torch.sort(t.keys).values)
    torch.testing.assert_close(s.rows[torch.argsort(s.keys)], t.rows[torch.argsort(t.keys)])


def test_sample_size_caps_memory(multiclass_data):
    logits, y = multiclass_data(20_000, seed=16, num_classes=3, sharpen=2.0)
    cal = TemperatureScaling(3, sample_size=2_000).update(logits, y).fit()
    assert cal.sample.rows.shape == (2_000, 3) and cal.fit_info["num_voxels"] == 20_000
    assert cal.temperature == pytest.approx(2.0, rel=0.15)


def test_anti_correlated_logits_raise(binary_data):
    logits, y, _ = binary_data(10_000, seed=17, sharpen=-1.0, shift=0.0)
    with pytest.raises(ValueError, match="not positively related"):
        TemperatureScaling(2).update(logits, y).fit()
