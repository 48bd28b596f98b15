"""Platt scaling against scikit-learn / float64 references, calibration gain, layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from monai_meep.calibration import PlattScaling
from monai_meep.calibration.platt import fit_logistic
from monai_meep.metrics.calibration import calibration_error


def _sk(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    lr = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(x[:, None], y, sample_weight=w)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def test_binary_matches_sklearn_and_lbfgs(binary_data):
    logits, y, _ = binary_data(40_000, seed=0, sharpen=3.0, shift=0.7)
    cal = PlattScaling(num_classes=2)
    for i in range(logits.shape[0]):  # streamed in two batches
        cal.update(logits[i : i + 1], y[i : i + 1])
    cal.fit()
    z = (logits[:, 1] - logits[:, 0]).double().reshape(-1).numpy()
    t = y.reshape(-1).numpy()
    a_sk, b_sk = _sk(z, t)

    # full-batch float64 L-BFGS on the raw voxels (independent of both implementations)
    def nll(th):
        s = th[0] * z + th[1]
        return np.mean(np.logaddexp(0, s) - t * s)

    a_lb, b_lb = minimize(nll, [1.0, 0.0], method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15}).x
    # binning on a 0.01 logit grid: parameters within 1e-4 of the raw-voxel optimum (measured ~1e-7)
    assert cal.a[0] == pytest.approx(a_sk, abs=1e-4) and cal.b[0] == pytest.approx(b_sk, abs=1e-4)
    assert cal.a[0] == pytest.approx(a_lb, abs=1e-4) and cal.b[0] == pytest.approx(b_lb, abs=1e-4)
    # the generating process is recovered: labels ~ sigmoid(z_true), logits = 3 z_true + 0.7
    assert cal.a[0] == pytest.approx(1 / 3, abs=0.03) and cal.b[0] == pytest.approx(-0.7 / 3, abs=0.05)


def test_fit_logistic_exact_on_weighted_points():
    rng = np.random.default_rng(3)
    x = rng.normal(size=300) * 3
    y = (rng.random(300) < 1 / (1 + np.exp(-(0.5 * x - 0.2)))).astype(float)
    w = rng.integers(1, 1000, size=300).astype(float)
    a, b, info = fit_logistic(x, y, w)
    a_sk, b_sk = _sk(x, y, w)
    assert a == pytest.approx(a_sk, abs=1e-6) and b == pytest.approx(b_sk, abs=1e-6)
    assert info["nll_after"] <= info["nll_before"]


def test_reduces_ece_on_held_out(binary_data):
    fit_x, fit_y, _ = binary_data(100_000, seed=1, sharpen=4.0, shift=1.0)
    test_x, test_y, _ = binary_data(100_000, seed=2, sharpen=4.0, shift=1.0)
    cal = PlattScaling(num_classes=2).update(fit_x, fit_y).fit()
    before = calibration_error(torch.softmax(test_x, 1), test_y).item()
    after = calibration_error(cal(test_x), test_y).item()
    assert before > 0.08  # the synthetic predictions really are mis-calibrated
    assert after < 0.01 and after < before / 8


def test_probability_input_equivalent_to_logits(binary_data):
    logits, y, _ = binary_data(20_000, seed=4, sharpen=2.0, shift=-0.5)
    a = PlattScaling(2).update(logits, y).fit()
    b = PlattScaling(2, input_type="probs").update(torch.softmax(logits.double(), 1), y).fit()
    assert a.a[0] == pytest.approx(b.a[0], abs=1e-4) and a.b[0] == pytest.approx(b.b[0], abs=1e-4)
    torch.testing.assert_close(a(logits), b(torch.softmax(logits, 1)), atol=1e-4, rtol=0)


def test_sigmoid_one_channel_equals_softmax_two_channels(binary_data):
    logits, y, _ = binary_data(20_000, seed=5, sharpen=2.0, shift=0.3)
    fg = logits[:, 1:2] - logits[:, 0:1]
    soft = PlattScaling(2).update(logits, y).fit()
    sig = PlattScaling(1, activation="sigmoid").update(fg, y).fit()
    assert soft.a == pytest.approx(sig.a, abs=1e-12) and soft.b == pytest.approx(sig.b, abs=1e-12)
    torch.testing.assert_close(soft(logits)[:, 1:2], sig(fg))


def test_multiclass_one_vs_rest_renormalised(multiclass_data):
    logits, y = multiclass_data(30_000, seed=6, num_classes=3, sharpen=3.0)
    cal = PlattScaling(3).update(logits, y).fit()
    # task c is an independent logistic regression of (y == c) on z_c - logsumexp_{k != c} z_k
    z = logits.double()
    for c in range(3):
        others = torch.cat([z[:, :c], z[:, c + 1 :]], 1)
        lc = (z[:, c] - torch.logsumexp(others, 1)).reshape(-1).numpy()
        a_sk, b_sk = _sk(lc, (y[:, 0] == c).reshape(-1).numpy().astype(float))
        assert cal.a[c] == pytest.approx(a_sk, abs=1e-4) and cal.b[c] == pytest.approx(b_sk, abs=1e-4)
    out = cal(logits)
    assert out.shape == logits.shape
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-6, rtol=0)
    before = calibration_error(torch.softmax(logits, 1), y, include_background=True).mean().item()
    after = calibration_error(out, y, include_background=True).mean().item()
    assert after < before / 3


def test_multilabel_sigmoid_channels_independent():
    g = torch.Generator().manual_seed(7)
    z = torch.randn(2, 2, 50, 100, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 2, 50, 100, generator=g, dtype=torch.float64) < torch.sigmoid(z)).long()
    x = torch.stack([2 * z[:, 0], 0.5 * z[:, 1] + 1], 1).float()
    cal = PlattScaling(2, activation="sigmoid").update(x, y).fit()
    for c in range(2):
        a_sk, b_sk = _sk(x[:, c].double().reshape(-1).numpy(), y[:, c].reshape(-1).numpy())
        assert cal.a[c] == pytest.approx(a_sk, abs=1e-4) and cal.b[c] == pytest.approx(b_sk, abs=1e-4)
    out = cal(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_mask_excludes_voxels(binary_data):
    logits, y, _ = binary_data(20_000, seed=8, sharpen=2.0, shift=0.0)
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[..., :50] = True
    y_ignored = y.clone()
    y_ignored[..., 50:] = 2  # e.g. WMH "other pathology" under a False mask: neither used nor range-checked
    masked = PlattScaling(2).update(logits, y_ignored, mask).fit()
    sub = PlattScaling(2).update(logits[..., :50], y[..., :50]).fit()
    assert masked.a == pytest.approx(sub.a, abs=1e-12) and masked.b == pytest.approx(sub.b, abs=1e-12)


def test_anti_correlated_logits_give_the_constrained_optimum(binary_data, tmp_path):
    """Unconstrained slope < 0 (ranking reversed): the fit warns and returns a = 0, b = logit(base rate), which is
    the minimum of the (convex) NLL over a >= 0 (checked against a bounded L-BFGS fit), and the file loads back."""
    logits, y, _ = binary_data(10_000, seed=17, sharpen=-1.0, shift=0.0)
    with pytest.warns(UserWarning, match="a = 0"):
        cal = PlattScaling(2).update(logits, y).fit()
    rate = float(y.double().mean())
    assert cal.a == [0.0] and cal.b[0] == pytest.approx(np.log(rate / (1 - rate)), abs=1e-9)
    z = (logits[:, 1] - logits[:, 0]).double().flatten().numpy()
    t = y.flatten().double().numpy()

    def nll(p):
        s = p[0] * z + p[1]
        return float(np.sum(np.logaddexp(0, s) - t * s))

    best = minimize(nll, x0=[0.5, 0.0], bounds=[(0, None), (None, None)], method="L-BFGS-B")
    assert best.x[0] == pytest.approx(0.0, abs=1e-6) and best.x[1] == pytest.approx(cal.b[0], abs=1e-4)
    path = tmp_path / "platt.json"
    cal.save(path)
    assert PlattScaling.load(path).a == [0.0]
