"""CalibrationHistogram: exact counts / sums against float64 NumPy recomputations, streaming, merge, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_meep.metrics import CalibrationHistogram, brier_score_from_histogram, calibration_error_from_histogram
from monai_meep.metrics._histogram_numba import HAS_NUMBA


def _data(b=3, c=3, shape=(6, 7, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(b, c, *shape, generator=g), 1)
    target = torch.randint(0, c, (b, 1, *shape), generator=g)
    mask = torch.rand(b, 1, *shape, generator=g) > 0.3
    return probs, target, mask


def _numpy_state(probs, target, mask, s_bins):
    """Independent float64 recomputation of every field, voxel by voxel in NumPy."""
    p = probs.double().numpy()
    c = p.shape[1]
    p = np.moveaxis(p, 1, -1).reshape(-1, c)
    y = target.numpy().reshape(-1).astype(np.int64)
    keep = np.ones_like(y, bool) if mask is None else mask.numpy().reshape(-1)
    p, y = p[keep], y[keep]
    onehot = np.eye(c)[y]
    sub = np.minimum(np.floor(p * s_bins).astype(np.int64), s_bins - 1)
    counts = np.zeros((c, s_bins), np.int64)
    positives = np.zeros((c, s_bins), np.int64)
    sums = np.zeros((c, s_bins))
    for k in range(c):
        np.add.at(counts[k], sub[:, k], 1)
        np.add.at(positives[k], sub[y == k, k], 1)
        np.add.at(sums[k], sub[:, k], p[:, k])
    conf, pred = p.max(1), p.argmax(1)
    tsub = np.minimum(np.floor(conf * s_bins).astype(np.int64), s_bins - 1)
    return {
        "counts": counts,
        "positives": positives,
        "prob_sums": sums,
        "brier_sums": ((p - onehot) ** 2).sum(0),
        "brier_pos_sums": np.array([((p[y == k, k] - 1) ** 2).sum() for k in range(c)]),
        "nll_sum": -np.log(np.maximum(p[np.arange(len(y)), y], np.finfo(np.float32).eps)).sum(),
        "top_counts": np.bincount(tsub, minlength=s_bins),
        "top_correct": np.bincount(tsub[pred == y], minlength=s_bins),
        "top_conf_sums": np.bincount(tsub, weights=conf, minlength=s_bins),
    }


def _assert_state(h, ref):
    for k, v in ref.items():
        got = getattr(h, k).cpu().numpy()
        if np.issubdtype(np.asarray(v).dtype, np.integer):
            np.testing.assert_array_equal(got, v, err_msg=k)
        else:
            np.testing.assert_allclose(got, v, rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("use_mask", [False, True])
def test_state_matches_numpy_float64(use_mask):
    probs, target, mask = _data()
    mask = mask if use_mask else None
    h = CalibrationHistogram(3, num_sub_bins=60).update(probs, target, mask=mask)
    _assert_state(h, _numpy_state(probs, target, mask, 60))
    assert int(h.num_voxels) == (probs[:, :1].numel() if mask is None else int(mask.sum()))


def test_chunking_and_onehot_do_not_change_the_state():
    probs, target, mask = _data()
    full = CalibrationHistogram(3).update(probs, target, mask=mask)
    onehot = torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    # chunks smaller than one image (split inside images) and holding several images
    for chunk in (17, 500, 10_000):
        h = CalibrationHistogram(3, chunk_size=chunk).update(probs, onehot, mask=mask)
        for k in ("counts", "positives", "top_counts", "top_correct"):
            assert torch.equal(getattr(h, k), getattr(full, k)), (chunk, k)
        for k in ("prob_sums", "brier_sums", "brier_pos_sums", "nll_sum", "top_conf_sums"):
            torch.testing.assert_close(getattr(h, k), getattr(full, k), rtol=1e-13, atol=1e-13)


def test_float64_and_non_contiguous_inputs():
    probs, target, mask = _data()
    ref = _numpy_state(probs, target, mask, 30)
    p64 = probs.double()
    channels_last = p64.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)  # same values, other strides
    for p in (p64, channels_last, p64.transpose(2, 3).transpose(2, 3)):
        for chunk in (50, 1 << 18):
            h = CalibrationHistogram(3, num_sub_bins=30, chunk_size=chunk).update(p, target, mask=mask)
            for k in ("counts", "positives", "top_correct"):
                np.testing.assert_array_equal(getattr(h, k).numpy(), ref[k], err_msg=k)
            np.testing.assert_allclose(h.brier_sums.numpy(), ref["brier_sums"], rtol=1e-12)
    assert torch.equal(p64, probs.double())  # inputs are never modified in place


def test_sigmoid_channel_equals_two_channel_softmax():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(2, 1, 9, 9, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 1, 9, 9, generator=g, dtype=torch.float64) < p).long()
    a = CalibrationHistogram(2).update(p, y)
    b = CalibrationHistogram(2).update(torch.cat([1 - p, p], 1), y)
    for k, v in a.state_dict().items():
        if isinstance(v, torch.Tensor):
            torch.testing.assert_close(v, getattr(b, k), rtol=1e-14, atol=1e-14)


def test_merge_state_dict_reset():
    probs, target, mask = _data()
    whole = CalibrationHistogram(3).update(probs, target, mask=mask)
    a = CalibrationHistogram(3).update(probs[:1], target[:1], mask=mask[:1])
    b = CalibrationHistogram(3).update(probs[1:], target[1:], mask=mask[1:])
    merged = a.clone().merge(b)
    assert torch.equal(merged.counts, whole.counts) and torch.equal(merged.top_correct, whole.top_correct)
    torch.testing.assert_close(merged.prob_sums, whole.prob_sums, rtol=1e-13, atol=1e-13)
    restored = CalibrationHistogram(3).load_state_dict(merged.state_dict())
    assert torch.equal(restored.positives, whole.positives)
    restored.reset()
    assert int(restored.num_voxels) == 0 and float(restored.nll_sum) == 0.0
    with pytest.raises(ValueError, match="num_sub_bins"):
        a.merge(CalibrationHistogram(3, num_sub_bins=30))
    with pytest.raises(ValueError, match="num_classes"):
        CalibrationHistogram(2).load_state_dict(whole.state_dict())


def test_bin_statistics_uniform_and_adaptive():
    g = torch.Generator().manual_seed(2)
    # distinct probabilities on sub-bin centres: the adaptive bins are then exactly equal-mass bins of sorted values
    s_bins, n, nb = 6000, 997, 10
    sub = torch.randperm(s_bins, generator=g)[:n]
    p = ((sub.double() + 0.5) / s_bins).view(1, 1, n)
    y = (torch.rand(1, 1, n, generator=g, dtype=torch.float64) < p).long()
    h = CalibrationHistogram(2, num_sub_bins=s_bins).update(p, y)
    cnt, hit, sm, lo, hi = h.bin_statistics(nb, binning="adaptive")
    pv, yv = p.view(-1).numpy(), y.view(-1).numpy()
    order = np.argsort(pv)
    bins = np.floor(np.arange(n) * nb / n).astype(int)  # rank-based equal-mass bins
    np.testing.assert_array_equal(cnt[1].numpy(), np.bincount(bins, minlength=nb))
    np.testing.assert_array_equal(hit[1].numpy(), np.bincount(bins, weights=yv[order], minlength=nb))
    np.testing.assert_allclose(sm[1].numpy(), np.bincount(bins, weights=pv[order], minlength=nb), rtol=1e-13)
    assert torch.all(lo[1, 1:] >= hi[1, :-1])  # ordered, non-overlapping
    ucnt, _, usm, ulo, uhi = h.bin_statistics(15)
    np.testing.assert_array_equal(ucnt[1].numpy(), np.bincount(np.floor(pv * 15).astype(int), minlength=15))
    assert ulo[0, 3].item() == pytest.approx(3 / 15) and uhi[0, 3].item() == pytest.approx(4 / 15)
    with pytest.raises(ValueError, match="does not divide"):
        h.bin_statistics(7)


def test_bad_input_raises_and_leaves_state_untouched(cpu_path):
    probs, target, _ = _data(c=3)
    h = CalibrationHistogram(3).update(probs, target)
    before = h.state_dict()
    bad_value = probs.clone()
    bad_value[0, 0, 0, 0, 0] = 1.5
    nan = probs.clone()
    nan[-1, 1, 2, 2, 2] = float("nan")
    cases = [
        ((bad_value, target), "lie in \\[0, 1\\]"),
        ((nan, target), "NaN"),
        ((probs * 0.9, target), "sum to 1"),
        ((torch.randn_like(probs), target), "0, 1|sum"),
        ((probs, target[:, :, :3]), "does not match"),
        ((probs[:, :2], target), "channels"),
        ((probs, target + 1), "labels must lie"),
        ((probs, target.float() + 0.5), "integer"),
        ((probs, torch.ones_like(probs)), "one-hot"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            h.update(*args)
    with pytest.raises(ValueError, match="mask shape"):
        h.update(probs, target, mask=torch.ones(3, 1, 6, 7, dtype=torch.bool))
    for k, v in before.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, getattr(h, k)), k  # the failed batches left no trace
    # check_sum=False accepts per-class calibrated outputs that do not sum to 1
    CalibrationHistogram(3, check_sum=False).update(probs * 0.9, target)


def test_labels_checked_only_where_scored_and_ignore_index():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(1, 1, 50, generator=g)
    y = torch.randint(0, 3, (1, 1, 50), generator=g)  # WMH-like: label 2 = other pathology
    keep = y != 2
    a = CalibrationHistogram(2).update(p, y, mask=keep)
    b = CalibrationHistogram(2).update(p, y, ignore_index=2)
    c = CalibrationHistogram(2).update(p[keep].view(1, 1, -1), y[keep].view(1, 1, -1))
    assert torch.equal(a.counts, c.counts) and torch.equal(b.positives, c.positives)
    with pytest.raises(ValueError, match="labels must lie"):
        CalibrationHistogram(2).update(p, y)


def test_exact_at_3e7_voxels_where_float32_accumulation_fails(single_thread):
    """31.5 M voxels streamed in chunks; float32 accumulators (MONAI 1.6 / torchmetrics style) drift measurably."""
    g = torch.Generator().manual_seed(4)
    nb, chunk, n_chunks = 15, 1 << 21, 15
    h = CalibrationHistogram(2)
    cnt, sp, sy, brier = np.zeros(nb, np.int64), np.zeros(nb), np.zeros(nb), 0.0
    cnt32, sp32, sy32 = (torch.zeros(nb, dtype=torch.float32) for _ in range(3))
    for _ in range(n_chunks):
        # segmentation-like: most voxels confidently background, labels drawn from p (perfect calibration)
        u = torch.rand(chunk, generator=g)
        p = torch.where(torch.rand(chunk, generator=g) < 0.97, u * 0.05, u)
        y = torch.rand(chunk, generator=g) < p
        h.update(p.view(1, 1, -1), y.view(1, 1, -1))
        pn, yn = p.double().numpy(), y.numpy()
        b = np.minimum(np.floor(pn * nb).astype(np.int64), nb - 1)
        cnt += np.bincount(b, minlength=nb)
        sp += np.bincount(b, weights=pn, minlength=nb)
        sy += np.bincount(b, weights=yn, minlength=nb)
        brier += float(((pn - yn) ** 2).sum())
        idx = torch.from_numpy(b)
        cnt32.scatter_add_(0, idx, torch.ones(chunk))
        sp32.scatter_add_(0, idx, p)
        sy32.scatter_add_(0, idx, y.float())
    n = int(cnt.sum())
    assert n >= 3e7 and int(h.num_voxels) == n
    ece_ref = np.abs(sp - sy).sum() / n
    ece = float(calibration_error_from_histogram(h, nb)[0])
    assert abs(ece - ece_ref) < 1e-6, (ece, ece_ref)
    assert abs(float(brier_score_from_histogram(h)[0]) - brier / n) < 1e-6
    ece32 = float((sp32 - sy32).abs().sum() / cnt32.sum())
    assert abs(ece32 - ece_ref) > 1e-3, (ece32, ece_ref)  # the float32 accumulators are measurably wrong


@pytest.mark.gpu
def test_cuda_state_equals_cpu_state():
    probs, target, mask = _data(b=2, shape=(40, 30, 20))
    cpu = CalibrationHistogram(3).update(probs, target, mask=mask)
    gpu = CalibrationHistogram(3).update(probs.cuda(), target.cuda(), mask=mask.cuda())
    assert gpu.counts.is_cuda  # device=None follows the first update
    for k, v in cpu.state_dict().items():
        if isinstance(v, torch.Tensor):
            torch.testing.assert_close(getattr(gpu, k).cpu(), v, rtol=1e-12, atol=1e-12, msg=k)


@pytest.fixture(params=["numba", "numpy", "torch"])
def cpu_path(request, monkeypatch):
    """CPU updates run the compiled (Numba) pass, or NumPy without Numba; the torch path (used on CUDA) is checked on
    the CPU by switching."""
    import monai_meep.metrics.histogram as hist_module

    if request.param == "numba" and not HAS_NUMBA:
        pytest.skip("Numba is not installed")
    monkeypatch.setattr(hist_module, "_CPU_BACKEND", request.param)
    return request.param


def _nll_ref(probs, target, mask, eps):
    p = np.moveaxis(probs.double().numpy(), 1, -1).reshape(-1, probs.shape[1])
    if p.shape[1] == 1:
        p = np.concatenate([1 - p, p], 1)
    y = target.numpy().reshape(-1).astype(np.int64)
    keep = np.ones_like(y, bool) if mask is None else mask.numpy().reshape(-1)
    return -np.log(np.maximum(p[keep][np.arange(int(keep.sum())), y[keep]], eps)).sum()


@pytest.mark.parametrize("chunk", [37, 1000, 1 << 18])
def test_both_cpu_paths_match_numpy(cpu_path, chunk):
    """Odd chunk sizes: partial chunks, chunks across images, NLL group padding; masks, one-hot and float64 inputs."""
    probs, target, mask = _data(b=2, c=4, shape=(9, 11, 7), seed=5)
    onehot = torch.nn.functional.one_hot(target[:, 0], 4).movedim(-1, 1)
    for p, t, m in ((probs, target, None), (probs, onehot, mask), (probs.double(), target, mask)):
        h = CalibrationHistogram(4, num_sub_bins=90, chunk_size=chunk).update(p, t, mask=m)
        ref = _numpy_state(probs.double() if p.dtype == torch.float64 else probs, target, m, 90)
        ref["nll_sum"] = _nll_ref(p, target, m, torch.finfo(p.dtype).eps)
        _assert_state(h, ref)


def test_bin_edges_and_arg_max_ties_are_exact(cpu_path):
    """Probabilities exactly on sub-bin edges and one ulp either side (float32 and float64), and exact ties for the
    top label (first arg-max wins, as np.argmax): integer fields must equal the float64 NumPy recomputation."""
    s_bins = 6000
    k = torch.arange(0, s_bins + 1, 7, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        edge = (k / s_bins).to(dtype)
        p1 = torch.cat(
            [edge, torch.nextafter(edge, torch.ones_like(edge)), torch.nextafter(edge, torch.zeros_like(edge))]
        )
        p1 = p1.clamp(0, 1).view(1, 1, -1)
        y = (torch.arange(p1.numel()) % 2).view(1, 1, -1)
        h = CalibrationHistogram(2, num_sub_bins=s_bins).update(p1, y)
        ref = _numpy_state(torch.cat([1 - p1.double(), p1.double()], 1), y, None, s_bins)
        for key in ("counts", "positives", "top_counts", "top_correct"):
            np.testing.assert_array_equal(getattr(h, key).numpy(), ref[key], err_msg=f"{dtype} {key}")
    rows = [[0.25, 0.375, 0.375, 0.0], [0.5, 0.5, 0.0, 0.0], [0.25] * 4, [0.125, 0.375, 0.125, 0.375], [0, 0, 0.5, 0.5]]
    p = torch.tensor(rows, dtype=torch.float32).repeat(4, 1)  # every row with every label
    y = torch.arange(4).repeat_interleave(len(rows))
    probs, target = p.t().reshape(1, 4, -1), y.view(1, 1, -1)
    h = CalibrationHistogram(4, num_sub_bins=60).update(probs, target)
    _assert_state(h, _numpy_state(probs, target, None, 60))
    assert int(h.top_correct.sum()) == sum(int(np.argmax(r) == lab) for lab in range(4) for r in rows)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_nll_of_saturated_predictions_is_finite_and_exact(cpu_path, dtype):
    """Hundreds of voxels with p_y == 0 (more than one NLL product group): each costs -log(eps) of the input dtype,
    with no underflow of the grouped products."""
    g = torch.Generator().manual_seed(7)
    p = torch.rand(1, 1, 1003, generator=g).to(dtype)
    y = (torch.rand(1, 1, 1003, generator=g) < 0.5).long()
    p[0, 0, :400] = (1 - y[0, 0, :400]).to(dtype)  # confidently wrong: p_y == 0
    h = CalibrationHistogram(2, chunk_size=333).update(p, y)
    eps = torch.finfo(dtype).eps
    assert np.isfinite(float(h.nll_sum))
    np.testing.assert_allclose(float(h.nll_sum), _nll_ref(p.float(), y, None, eps), rtol=1e-12)
    assert float(h.nll_sum) >= 400 * -np.log(eps) * (1 - 1e-12)
