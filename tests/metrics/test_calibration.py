"""Functional calibration metrics and their MONAI metric classes against independent references.

References: float64 NumPy recomputations, scikit-learn (brier_score_loss, log_loss, calibration_curve), MONAI 1.6's
CalibrationErrorMetric and torchmetrics on small inputs; per-image vs pooled semantics; DDP with 2 gloo processes.
"""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from monai_meep.metrics import (
    BrierScoreMetric,
    ExpectedCalibrationErrorMetric,
    NegativeLogLikelihoodMetric,
    brier_score,
    calibration_error,
    negative_log_likelihood,
    reliability_curve,
)

from .ddp_helpers import ddp_data, ddp_run, ddp_worker, ddp_worker_shared, empty_rank_worker


def _binary(n=4000, seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(b, 1, n, generator=g) ** 2
    y = (torch.rand(b, 1, n, generator=g) < (p * 0.8 + 0.1)).long()  # miscalibrated on purpose
    return p, y


def _multiclass(b=2, c=3, shape=(12, 10, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(b, c, *shape, generator=g), 1)
    target = torch.randint(0, c, (b, 1, *shape), generator=g)
    return probs, target


def _np_ece(conf, hit, num_bins, norm):
    """Textbook binned calibration error on float64 NumPy arrays (1-D confidence, 0/1 hit)."""
    conf = conf.astype(np.float64)
    b = np.minimum(np.floor(conf * num_bins).astype(int), num_bins - 1)
    gaps, weights = [], []
    for k in range(num_bins):
        sel = b == k
        if sel.any():
            gaps.append(abs(conf[sel].mean() - hit[sel].mean()))
            weights.append(sel.mean())
    gaps, weights = np.array(gaps), np.array(weights)
    return {
        "l1": (weights * gaps).sum(),
        "l2": np.sqrt((weights * gaps**2).sum()),
        "max": gaps.max(),
        "average": gaps.mean(),
    }[norm]


@pytest.mark.parametrize("norm", ["l1", "l2", "max", "average"])
def test_calibration_error_matches_numpy(norm):
    probs, target = _multiclass()
    p = np.moveaxis(probs.double().numpy(), 1, -1).reshape(-1, 3)
    y = target.numpy().reshape(-1)
    got = calibration_error(probs, target, num_bins=15, norm=norm, include_background=True)
    want = [_np_ece(p[:, c], (y == c).astype(float), 15, norm) for c in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert torch.equal(calibration_error(probs, target, norm=norm), got[1:])  # include_background=False drops class 0
    top = calibration_error(probs, target, num_bins=10, norm=norm, mode="top_label")
    assert top.ndim == 0
    np.testing.assert_allclose(float(top), _np_ece(p.max(1), (p.argmax(1) == y).astype(float), 10, norm), rtol=1e-12)


def test_binary_ece_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    p, y = _binary()
    for norm in ("l1", "l2", "max"):
        ref = tm.binary_calibration_error(p.view(-1), y.view(-1), n_bins=15, norm=norm)
        np.testing.assert_allclose(float(calibration_error(p, y, norm=norm)[0]), float(ref), atol=1e-6)
    probs, target = _multiclass()
    ref = tm.multiclass_calibration_error(probs.movedim(1, -1).reshape(-1, 3), target.view(-1), 3, n_bins=15)
    np.testing.assert_allclose(float(calibration_error(probs, target, mode="top_label")), float(ref), atol=1e-6)


@pytest.mark.parametrize("reduction", ["expected", "average", "maximum"])
@pytest.mark.parametrize("include_background", [True, False])
def test_metric_agrees_with_monai_calibration_error_metric(reduction, include_background):
    from monai.metrics import CalibrationErrorMetric

    probs, target = _multiclass(b=3)
    onehot = torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    kw = dict(num_bins=15, include_background=include_background, calibration_reduction=reduction)
    ref = CalibrationErrorMetric(**kw, metric_reduction="none")
    ours = ExpectedCalibrationErrorMetric(**kw, metric_reduction="none")
    ref(probs, onehot)
    ours(probs, target)  # index target; one-hot works too
    np.testing.assert_allclose(ours.aggregate().numpy(), ref.aggregate().double().numpy(), atol=1e-6)
    ours.reset()
    ours(probs, onehot)
    np.testing.assert_allclose(ours.aggregate().numpy(), ref.aggregate().double().numpy(), atol=1e-6)


def test_brier_and_nll_match_sklearn():
    p, y = _binary()
    pv, yv = p.view(-1).double().numpy(), y.view(-1).numpy()
    np.testing.assert_allclose(float(brier_score(p, y)[0]), brier_score_loss(yv, pv), rtol=1e-12)
    pos, neg = yv == 1, yv == 0
    np.testing.assert_allclose(
        float(brier_score(p, y, stratum="positive")[0]), brier_score_loss(yv[pos], pv[pos], pos_label=1), rtol=1e-12
    )
    np.testing.assert_allclose(float(brier_score(p, y, stratum="negative")[0]), (pv[neg] ** 2).mean(), rtol=1e-12)
    # multi-class: per class one-vs-rest; NLL = sklearn log_loss (same clipping at float32 eps)
    probs, target = _multiclass()
    pm = np.moveaxis(probs.double().numpy(), 1, -1).reshape(-1, 3)
    ym = target.numpy().reshape(-1)
    want = [brier_score_loss((ym == c).astype(int), pm[:, c]) for c in range(3)]
    np.testing.assert_allclose(brier_score(probs, target, include_background=True).numpy(), want, rtol=1e-12)
    eps = np.finfo(np.float32).eps
    want_nll = -np.log(np.maximum(pm[np.arange(len(ym)), ym], eps)).mean()
    np.testing.assert_allclose(float(negative_log_likelihood(probs, target)), want_nll, rtol=1e-12)
    np.testing.assert_allclose(float(negative_log_likelihood(probs, target)), log_loss(ym, pm, labels=[0, 1, 2]), 1e-6)


def test_reliability_curve_matches_sklearn_calibration_curve():
    p, y = _binary(n=3000)
    rc = reliability_curve(p, y, num_bins=10)
    pv, yv = p.view(-1).double().numpy(), y.view(-1).numpy()
    prob_true, prob_pred = calibration_curve(yv, pv, n_bins=10, strategy="uniform")
    keep = rc.counts[0] > 0
    np.testing.assert_allclose(rc.frequency[0][keep].numpy(), prob_true, rtol=1e-12)
    np.testing.assert_allclose(rc.confidence[0][keep].numpy(), prob_pred, rtol=1e-12)
    assert int(rc.counts.sum()) == pv.size and rc.classes == [1]
    np.testing.assert_allclose(rc.ece.numpy(), calibration_error(p, y, num_bins=10).numpy(), rtol=1e-12)
    assert len(rc.to_records()) == 10 and rc.to_records()[0].keys() >= {"confidence", "frequency", "count"}


def test_adaptive_binning_and_mask():
    p, y = _binary(n=5000, seed=3)
    ece_a = calibration_error(p, y, num_bins=10, binning="adaptive")
    ece_u = calibration_error(p, y, num_bins=10)
    assert torch.isfinite(ece_a).all() and not torch.equal(ece_a, ece_u)
    curve = reliability_curve(p, y, num_bins=10, binning="adaptive")
    counts = curve.counts[0].double()
    assert float(counts.max() - counts.min()) <= 0.05 * float(counts.mean())  # (nearly) equal mass
    mask = torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    sel = mask.view(-1)
    got = calibration_error(p, y, mask=mask)
    ref = calibration_error(p.view(-1)[sel].view(1, 1, -1), y.view(-1)[sel].view(1, 1, -1))
    torch.testing.assert_close(got, ref, rtol=1e-14, atol=1e-14)


def test_empty_mask_gives_nan_with_warning():
    p, y = _binary(n=100)
    empty = torch.zeros_like(p, dtype=torch.bool)
    for fn in (calibration_error, brier_score, negative_log_likelihood):
        with pytest.warns(UserWarning, match="NaN"):
            assert torch.isnan(fn(p, y, mask=empty)).all()


def test_bad_arguments_raise():
    p, y = _binary(n=100)
    for kwargs, msg in [({"norm": "l3"}, "norm"), ({"mode": "x"}, "mode"), ({"binning": "x"}, "binning")]:
        with pytest.raises(ValueError, match=msg):
            calibration_error(p, y, **kwargs)
    with pytest.raises(ValueError, match="stratum"):
        brier_score(p, y, stratum="both")
    with pytest.raises(ValueError, match="lie in"):
        calibration_error(p + 1, y)
    with pytest.raises(ValueError, match="calibration_reduction"):
        ExpectedCalibrationErrorMetric(calibration_reduction="median")


def test_per_image_vs_pooled_semantics():
    # two images of very different sizes and calibration: mean over images != pooled over voxels
    p1, y1 = _binary(n=1000, seed=1)
    p2 = torch.full((1, 1, 1000), 0.9)
    y2 = torch.zeros(1, 1, 1000, dtype=torch.long)
    y2[..., :100] = 1  # confidence 0.9, frequency 0.1
    mask2 = torch.zeros_like(p2, dtype=torch.bool)
    mask2[..., :200] = True  # only 200 voxels of image 2 scored
    probs, target, mask = torch.cat([p1, p2]), torch.cat([y1, y2]), torch.cat([torch.ones_like(mask2), mask2])
    per_img = [calibration_error(p1, y1), calibration_error(p2, y2, mask=mask2)]
    pooled = calibration_error(probs, target, mask=mask)
    for cls, fn, kw in [
        (ExpectedCalibrationErrorMetric, calibration_error, {}),
        (BrierScoreMetric, brier_score, {"stratum": "positive"}),
        (NegativeLogLikelihoodMetric, negative_log_likelihood, {}),
    ]:
        m = cls(**kw)
        m(probs[:1], target[:1], mask=mask[:1])  # two iterations
        m(probs[1:], target[1:], mask=mask[1:])
        rows = m.get_buffer()
        want_rows = torch.stack(
            [fn(probs[i : i + 1], target[i : i + 1], mask=mask[i : i + 1], **kw).reshape(-1) for i in range(2)]
        )
        torch.testing.assert_close(rows, want_rows, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.aggregate().squeeze(), want_rows.mean(), rtol=1e-12, atol=1e-12)  # MONAI: (1,)
        want_pooled = fn(probs, target, mask=mask, **kw).reshape(-1).mean()
        torch.testing.assert_close(m.aggregate(pooled=True).squeeze(), want_pooled, rtol=1e-12, atol=1e-12)
    assert abs(float(pooled) - float(torch.stack(per_img).mean())) > 0.05  # the two semantics really differ
    # the pooled flag, get_not_nans and reductions as MONAI
    m = ExpectedCalibrationErrorMetric(pooled=True, get_not_nans=True, include_background=True, reduction="mean_batch")
    m(probs, target, mask=mask)
    value, not_nans = m.aggregate()
    assert value.shape == (2,) and not_nans.tolist() == [1.0, 1.0]
    torch.testing.assert_close(value, calibration_error(probs, target, mask=mask, include_background=True))


def test_metric_list_inputs_masks_and_nan_rows():
    probs, target = _multiclass(b=3)
    mask = torch.ones(3, 1, *probs.shape[2:], dtype=torch.bool)
    mask[1] = False  # an image with nothing to score -> NaN row, skipped by the reduction
    a = BrierScoreMetric(include_background=True, get_not_nans=True)
    b = BrierScoreMetric(include_background=True, get_not_nans=True)
    with pytest.warns(UserWarning, match="NaN"):
        a(probs, target, mask=mask)
    with pytest.warns(UserWarning, match="NaN"):
        b(list(probs), list(target), mask=list(mask))  # decollated, as MONAI handlers pass them
    torch.testing.assert_close(a.get_buffer(), b.get_buffer(), equal_nan=True)
    value, not_nans = a.aggregate()
    assert torch.isnan(a.get_buffer()[1]).all() and float(not_nans) == 2.0  # images with a value, as MONAI
    torch.testing.assert_close(value.squeeze(), a.get_buffer()[[0, 2]].mean())
    with pytest.raises(ValueError, match="channels"):
        a(probs[:, :2], target)


# ----------------------------------------------------------------------------------------------- DDP (2 gloo ranks)
def _spawn_two_ranks(worker, tmp_path) -> None:
    """Run ``worker(rank, 2, port, tmp_path)`` in two spawned gloo ranks on a free local port."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.spawn(worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)


@pytest.mark.slow  # two spawned ranks each import torch + MONAI
@pytest.mark.parametrize("shared", [False, True], ids=["separate", "shared_state"])
def test_ddp_two_gloo_processes_equal_one_process(tmp_path, shared):
    """Also: metrics of one shared CalibrationState on two ranks equal separate metrics in one process."""
    _spawn_two_ranks(ddp_worker_shared if shared else ddp_worker, tmp_path)
    single = ddp_run(*ddp_data())
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for k, v in single.items():
            if not isinstance(v, torch.Tensor):
                assert got[k] == v
            elif v.dtype == torch.int64:
                assert torch.equal(got[k], v), k  # counts: bit for bit
            else:
                torch.testing.assert_close(got[k], v, rtol=1e-12, atol=1e-12, msg=k)


@pytest.mark.slow
def test_ddp_rank_without_data_takes_part_in_the_pooled_value(tmp_path):
    _spawn_two_ranks(empty_rank_worker, tmp_path)
    probs, target, mask = ddp_data()
    alone = ExpectedCalibrationErrorMetric(include_background=True, reduction="none")
    alone(probs, target, mask=mask)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got["pooled"], alone.aggregate(pooled=True), rtol=0, atol=1e-12)
        assert "no data accumulated on any rank" in got["error"]
