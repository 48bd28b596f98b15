"""Triton calibration histogram vs ``CalibrationHistogram.update`` (float64 bincount) and a NumPy float64 recount.

Exact int64 counts / positives, float64 sums to 1e-12 relative (addition order only), odd sizes, bin edges, masks,
ignore_index, one-hot, half-precision probabilities.
Runs on the Triton CPU interpreter without CUDA (see conftest.py), skips without triton.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from monai_meep.kernels import triton_histogram
from monai_meep.metrics.histogram import CalibrationHistogram


def _check(probs, target, c, s, device, mask=None, ignore_index=None, sum_rtol=1e-12):
    h = CalibrationHistogram(c, s, check_sum=False)
    h.update(probs, target, mask=mask, ignore_index=ignore_index)
    to = lambda x: None if x is None else x.to(device)  # noqa: E731
    counts, positives, sums = triton_histogram(to(probs), to(target), c, s, mask=to(mask), ignore_index=ignore_index)
    assert counts.dtype == positives.dtype == torch.int64 and sums.dtype == torch.float64
    assert torch.equal(counts.cpu(), h.counts)
    assert torch.equal(positives.cpu(), h.positives)
    torch.testing.assert_close(sums.cpu(), h.prob_sums, rtol=sum_rtol, atol=0.0)
    return counts.cpu(), positives.cpu(), sums.cpu()


@pytest.mark.parametrize("spatial", [(7, 5, 3), (33, 17)])
@pytest.mark.parametrize("c", [2, 3])
def test_softmax_index_targets(device, spatial, c):
    g = torch.Generator().manual_seed(c)
    probs = torch.softmax(3 * torch.randn(2, c, *spatial, generator=g), 1)
    target = torch.randint(0, c, (2, 1, *spatial), generator=g)
    _check(probs, target, c, 6000, device)


def test_binary_sigmoid_with_ignore_and_float_labels(device):
    """One channel expands to [1 - p, p]; WMH-style float labels 0 / 1 / 2 with label 2 ignored."""
    g = torch.Generator().manual_seed(4)
    p = torch.sigmoid(4 * torch.randn(3, 1, 33, 17, generator=g))
    p[0, 0, 0, :5] = torch.tensor([0.0, 1.0, 0.5, 1 / 3, 2.0**-30])  # edges, a tiny p (1 - p not float32)
    target = torch.randint(0, 3, (3, 1, 33, 17), generator=g).float()
    _check(p, target, 2, 6000, device, ignore_index=2)


def test_mask_and_sub_bin_edges(device):
    """p exactly on sub-bin edges k / S (and 1.0, closed last bin); a boolean mask; S not a power of 2."""
    s = 30
    edges = torch.arange(0, s + 1, dtype=torch.float64) / s
    p1 = edges.float().repeat(20)[:583]
    probs = torch.stack([1 - p1, p1]).view(1, 2, 583)
    target = (torch.arange(583) % 2).view(1, 1, 583)
    mask = (torch.arange(583) % 3 != 0).view(1, 1, 583)
    counts, _, _ = _check(probs, target, 2, s, device, mask=mask)
    # independent recount of class 1 in float64 NumPy
    p64 = p1.double().numpy()[mask.view(-1).numpy()]
    expected = np.bincount(np.minimum(np.floor(p64 * s), s - 1).astype(np.int64), minlength=s)
    assert np.array_equal(counts[1].numpy(), expected)


def test_onehot_target_with_mask(device):
    g = torch.Generator().manual_seed(7)
    probs = torch.softmax(torch.randn(2, 4, 9, 11, generator=g), 1)
    idx = torch.randint(0, 4, (2, 9, 11), generator=g)
    target = torch.nn.functional.one_hot(idx, 4).movedim(-1, 1).to(torch.uint8)
    mask = torch.rand(2, 1, 9, 11, generator=g) > 0.3
    _check(probs, target, 4, 60, device, mask=mask)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_probs(device, dtype):
    g = torch.Generator().manual_seed(9)
    probs = torch.softmax(torch.randn(1, 3, 21, 13, generator=g), 1).to(dtype)
    target = torch.randint(0, 3, (1, 1, 21, 13), generator=g)
    _check(probs, target, 3, 6000, device)


def test_many_voxels_one_bin_exact(device):
    """More voxels than one block in the same sub-bin: block results merge exactly (int64)."""
    probs = torch.full((1, 1, 2100), 0.25)
    target = torch.ones(1, 1, 2100, dtype=torch.long)
    counts, positives, sums = _check(probs, target, 2, 6000, device)
    assert int(counts[1, 1500]) == 2100 and int(positives[1, 1500]) == 2100 and float(sums[1, 1500]) == 525.0


def test_shape_errors(device):
    with pytest.raises(ValueError, match="does not match"):
        triton_histogram(torch.rand(1, 1, 4, device=device), torch.zeros(1, 1, 5, device=device), 2, 60)
    with pytest.raises(ValueError, match="probs must be"):
        triton_histogram(torch.rand(1, 3, 4, device=device), torch.zeros(1, 1, 4, device=device), 2, 60)


@pytest.mark.gpu
def test_large_on_gpu():
    """3e7 voxels on the GPU: the compiled kernel vs the float64 bincount reference on the same device."""
    g = torch.Generator(device="cuda").manual_seed(0)
    p = torch.rand(1, 1, 30_000_000, device="cuda", generator=g)
    y = (torch.rand(1, 1, 30_000_000, device="cuda", generator=g) < p).long()
    _check(p, y, 2, 6000, "cuda", sum_rtol=1e-10)
    probs = torch.softmax(3 * torch.randn(2, 3, 144, 144, 80, device="cuda", generator=g), 1)
    target = torch.randint(0, 3, (2, 1, 144, 144, 80), device="cuda", generator=g)
    _check(probs, target, 3, 6000, "cuda", sum_rtol=1e-10)
