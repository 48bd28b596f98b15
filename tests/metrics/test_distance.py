# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Hausdorff distance in mm vs MONAI, scipy and closed forms (both nearest-surface backends)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.metrics import HausdorffDistanceMetric
from monai.metrics.hausdorff_distance import compute_hausdorff_distance
from scipy.ndimage import binary_erosion
from scipy.spatial import cKDTree
from scipy.spatial.distance import directed_hausdorff

from monai_meep.metrics.distance import (
    HausdorffDistanceMMMetric,
    hausdorff_distance,
    nearest_surface_distances,
    surface_voxels,
)

BACKENDS = ["torch", "kdtree"]


# many tiny torch ops: on a shared 2-core machine, intra-op threads only add contention (100x slower ops)
pytestmark = pytest.mark.usefixtures("single_thread")


def blobs(shape, batch=1, n_class=2, n_blobs=4, seed=0):
    """Random one-hot masks: dilated seeds with speckle, so surfaces are irregular and there are small components."""
    g = torch.Generator().manual_seed(seed)
    fg = torch.zeros(batch, n_class - 1, *shape)
    for b in range(batch):
        for c in range(n_class - 1):
            for _ in range(n_blobs):
                idx = tuple(int(torch.randint(0, s, (1,), generator=g)) for s in shape)
                fg[(b, c) + idx] = 1
    pool = F.max_pool3d if len(shape) == 3 else F.max_pool2d
    fg = pool(fg, 5, 1, 2)
    fg = (fg.bool() ^ (torch.rand(fg.shape, generator=g) < 0.03)).float()
    return torch.cat([1 - fg.amax(1, keepdim=True), fg], dim=1)


def monai_hd(pred, gt, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_hausdorff_distance(pred, gt, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("percentile", [None, 95])
@pytest.mark.parametrize(
    "shape,spacing",
    [
        ((33, 41), None),
        ((33, 41), (0.7, 1.9)),
        ((23, 29, 17), None),
        ((23, 29, 17), (1.0, 1.0, 3.0)),
        ((23, 29, 17), [[0.625, 0.625, 0.625], [1.2, 0.5, 2.5]]),  # per image
    ],
)
def test_matches_monai(shape, spacing, percentile, backend):
    pred, gt = blobs(shape, batch=2, n_class=3, seed=1), blobs(shape, batch=2, n_class=3, seed=2)
    ours = hausdorff_distance(pred, gt, spacing=spacing, percentile=percentile, backend=backend)
    ref = monai_hd(pred, gt, spacing=spacing, percentile=percentile)
    assert ours.shape == ref.shape == (2, 2) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_monai_directed_and_background(backend):
    pred, gt = blobs((30, 26, 12), seed=3), blobs((30, 26, 12), seed=4)
    for kwargs in ({"directed": True}, {"include_background": True}, {"directed": True, "percentile": 50}):
        ours = hausdorff_distance(pred, gt, spacing=(0.8, 1.1, 2.0), backend=backend, **kwargs)
        ref = monai_hd(pred, gt, spacing=(0.8, 1.1, 2.0), **kwargs)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_scipy_directed_hausdorff(backend):
    spacing = np.array([1.3, 0.6, 2.2])
    pred, gt = blobs((14, 17, 11), seed=5), blobs((14, 17, 11), seed=6)
    # independent reference: scipy erosion edges, scaled coordinates, scipy's directed_hausdorff both ways
    pts = []
    for m in (pred[0, 1].numpy() > 0, gt[0, 1].numpy() > 0):
        edges = m & ~binary_erosion(m)
        pts.append(np.argwhere(edges) * spacing)
    expected = max(directed_hausdorff(pts[0], pts[1])[0], directed_hausdorff(pts[1], pts[0])[0])
    got = hausdorff_distance(pred, gt, spacing=tuple(spacing), backend=backend)
    assert abs(float(got) - expected) < 1e-4
    got_directed = hausdorff_distance(pred, gt, spacing=tuple(spacing), directed=True, backend=backend)
    assert abs(float(got_directed) - directed_hausdorff(pts[0], pts[1])[0]) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("percentile", [None, 95])
def test_two_single_voxels_closed_form(backend, percentile):
    pred, gt = torch.zeros(1, 2, 9, 12, 7), torch.zeros(1, 2, 9, 12, 7)
    pred[0, 1, 1, 2, 3] = 1
    gt[0, 1, 6, 10, 5] = 1
    spacing = (0.5, 0.8, 3.0)
    expected = math.sqrt((5 * 0.5) ** 2 + (8 * 0.8) ** 2 + (2 * 3.0) ** 2)
    got = hausdorff_distance(pred, gt, spacing=spacing, percentile=percentile, backend=backend)
    assert abs(float(got) - expected) < 1e-5
    assert float(hausdorff_distance(pred, gt, backend=backend)) == pytest.approx(math.sqrt(25 + 64 + 4), abs=1e-5)


def test_percentile_closed_form_linear_interpolation():
    # pred: a 1-voxel line of 5 voxels along x; gt: one voxel at the line's start -> pred->gt distances 0,1,2,3,4 mm
    pred, gt = torch.zeros(1, 1, 7, 3), torch.zeros(1, 1, 7, 3)
    pred[0, 0, 0:5, 1] = 1
    gt[0, 0, 0, 1] = 1
    d = hausdorff_distance(pred, gt, percentile=90, include_background=True, directed=True)
    assert float(d) == pytest.approx(0.9 * 4, abs=1e-6)  # linear quantile of 0..4 at 0.9
    assert float(hausdorff_distance(pred, gt, include_background=True)) == pytest.approx(4.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_masks(backend):
    full = blobs((16, 16, 8), seed=7)
    empty = torch.zeros_like(full)
    empty[:, 0] = 1
    with pytest.warns(UserWarning, match="empty"):
        both = hausdorff_distance(empty, empty, backend=backend)
    assert torch.isnan(both).all()
    for percentile in (None, 95):
        for directed in (False, True):
            for a, b in ((full, empty), (empty, full)):
                with pytest.warns(UserWarning, match="empty"):
                    d = hausdorff_distance(a, b, percentile=percentile, directed=directed, backend=backend)
                assert torch.isinf(d).all() and (d > 0).all()
    # MONAI agrees for the maximum (for a percentile it gives NaN, an artefact of interpolating infinities)
    assert torch.isinf(monai_hd(full, empty)).all() and torch.isnan(monai_hd(empty, empty)).all()


def test_surface_voxels_match_scipy_erosion():
    g = torch.Generator().manual_seed(8)
    for shape in ((5, 13, 11, 9), (4, 17, 19)):
        m = torch.rand(shape, generator=g) < 0.6
        ref = np.stack([x & ~binary_erosion(x) for x in m.numpy()])
        assert np.array_equal(surface_voxels(m).numpy(), ref)


def test_nearest_surface_distances_pruning_is_exact():
    g = torch.Generator().manual_seed(9)
    # a dense shell plus a far-away cluster, more points than a chunk, so the pruning and the fallback both run
    target = torch.cat([torch.randn(900, 3, generator=g, dtype=torch.float64) * 20, torch.full((5, 3), 300.0)])
    query = torch.cat([torch.randn(700, 3, generator=g, dtype=torch.float64) * 22, torch.full((7, 3), -250.0)])
    ref = cKDTree(target.numpy()).query(query.numpy())[0]
    got = nearest_surface_distances(query, target, max_elements=60_000)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)
    # the matrix-product form the CUDA path uses, run here on the CPU
    got_mm = nearest_surface_distances(query, target, max_elements=60_000, use_mm=True)
    np.testing.assert_allclose(got_mm.numpy(), ref, atol=1e-6)
    # with Z-order keys (the local bound)
    from monai_meep.metrics.surface import morton_keys

    def keyed(p):
        idx = (p - p.amin(0)).round().long()
        k, o = torch.sort(morton_keys(idx))
        return p[o], k

    (q, qk), (t, tk) = keyed(query), keyed(target)
    got = nearest_surface_distances(q, t, qk, tk)
    np.testing.assert_allclose(got.numpy(), cKDTree(t.numpy()).query(q.numpy())[0], atol=1e-9)


def test_single_channel_and_dtypes():
    pred, gt = blobs((20, 20, 6), seed=10), blobs((20, 20, 6), seed=11)
    ref = hausdorff_distance(pred, gt, spacing=2.0)
    torch.testing.assert_close(hausdorff_distance(pred.bool(), gt.long(), spacing=2.0), ref)
    with pytest.warns(UserWarning, match="single channel"):
        one = hausdorff_distance(pred[:, 1:], gt[:, 1:], spacing=2.0)
    torch.testing.assert_close(one, ref)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"target": torch.zeros(1, 2, 8, 9)}, "same shape"),
        ({"pred": torch.full((1, 2, 8, 8), 0.5)}, "binarised"),
        ({"spacing": (1.0, 2.0, 3.0)}, "per spatial axis"),
        ({"spacing": [[1.0, 1.0], [1.0, 1.0]]}, "per-image"),
        ({"spacing": (1.0, -1.0)}, "positive"),
        ({"percentile": 101}, "percentile"),
        ({"backend": "cuda-magic"}, "backend"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"pred": torch.zeros(1, 2, 8, 8), "target": torch.zeros(1, 2, 8, 8)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hausdorff_distance(**args)


def test_cumulative_metric_matches_monai_metric():
    spacing = (1.0, 1.0, 3.0)
    ours = HausdorffDistanceMMMetric(percentile=95, reduction="mean_batch", get_not_nans=True)
    ref = HausdorffDistanceMetric(percentile=95, reduction="mean_batch", get_not_nans=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in (12, 14):
            pred, gt = blobs((18, 22, 9), batch=2, n_class=3, seed=seed), blobs((18, 22, 9), 2, 3, seed=seed + 1)
            ours(y_pred=pred, y=gt, spacing=spacing)
            ref(y_pred=pred, y=gt, spacing=spacing)
        (v, n), (rv, rn) = ours.aggregate(), ref.aggregate()
    torch.testing.assert_close(v, rv, atol=1e-4, rtol=0)
    torch.testing.assert_close(n, rn)
    assert ours.get_buffer().shape == (4, 2)


def test_cumulative_metric_list_input_per_image_spacing():
    pred, gt = blobs((15, 14, 10), batch=2, seed=16), blobs((15, 14, 10), batch=2, seed=17)
    spacings = [[1.0, 1.0, 3.0], [0.5, 0.5, 0.5]]
    metric = HausdorffDistanceMMMetric(reduction="none", spacing=(9.0, 9.0, 9.0))
    metric(y_pred=list(pred), y=list(gt), spacing=spacings)
    expected = torch.cat([hausdorff_distance(pred[i : i + 1], gt[i : i + 1], spacing=spacings[i]) for i in range(2)])
    torch.testing.assert_close(metric.aggregate(), expected)
    metric.reset()
    metric(y_pred=pred, y=gt)  # no spacing in the call: the default one is used
    torch.testing.assert_close(metric.aggregate(), hausdorff_distance(pred, gt, spacing=9.0))


def test_metric_name_does_not_clash_with_monai():
    import monai.handlers
    import monai.metrics

    assert not hasattr(monai.metrics, "HausdorffDistanceMMMetric")
    assert not hasattr(monai.handlers, "HausdorffDistanceMM")


@pytest.mark.gpu
@pytest.mark.parametrize("percentile", [None, 95])
def test_cuda_matches_monai(percentile):
    pred, gt = blobs((40, 44, 20), batch=2, n_class=3, seed=18), blobs((40, 44, 20), batch=2, n_class=3, seed=19)
    ref = monai_hd(pred, gt, spacing=(1.0, 1.0, 3.0), percentile=percentile)
    got = hausdorff_distance(pred.cuda(), gt.cuda(), spacing=(1.0, 1.0, 3.0), percentile=percentile)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("percentile", [None, 95])
def test_matrix_product_path_matches_monai(monkeypatch, percentile):
    """The CUDA code path (matrix-product distances), forced on the CPU, including coincident surfaces."""
    import functools

    import monai_meep.metrics.distance as dist

    monkeypatch.setattr(dist, "nearest_surface_distances", functools.partial(nearest_surface_distances, use_mm=True))
    pred, gt = blobs((40, 36, 14), batch=2, n_class=3, seed=20), blobs((40, 36, 14), batch=2, n_class=3, seed=21)
    spacing = (0.9, 1.1, 3.0)
    got = dist.hausdorff_distance(pred, gt, spacing=spacing, percentile=percentile, backend="torch")
    torch.testing.assert_close(got, monai_hd(pred, gt, spacing=spacing, percentile=percentile), atol=1e-4, rtol=0)
    same = dist.hausdorff_distance(pred, pred, spacing=spacing, percentile=percentile, backend="torch")
    assert float(same.abs().max()) < 1e-5
