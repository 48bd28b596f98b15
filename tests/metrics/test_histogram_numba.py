# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The compiled CPU path of CalibrationHistogram: parts, threads, dtype blocks and error detection.

Every state here is compared with the NumPy path (an independent implementation, itself checked against a voxel-by-
voxel float64 recomputation in ``test_histogram.py``): integer fields bit for bit, float sums to 1e-12.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import monai_meep.kernels.parts as parts
import monai_meep.metrics._histogram_numba as hn
import monai_meep.metrics.histogram as hist_module
from monai_meep.metrics import CalibrationHistogram

from .test_histogram import _data

pytestmark = pytest.mark.skipif(not hn.HAS_NUMBA, reason="Numba is not installed")


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of ~100 voxels, so small inputs are split into many parts (up to MAX_PARTS) across image borders."""
    monkeypatch.setattr(hn, "MIN_PART_VOXELS", 100)


def _state(backend, monkeypatch, c, *args, **kwargs):
    monkeypatch.setattr(hist_module, "_CPU_BACKEND", backend)
    h = CalibrationHistogram(c, num_sub_bins=120).update(*args, **kwargs)
    return {k: v for k, v in h.state_dict().items() if isinstance(v, torch.Tensor)}


def _assert_same(got, ref, exact=False):
    for k, v in ref.items():
        if exact or v.dtype == torch.int64:
            assert torch.equal(got[k], v), k
        else:
            torch.testing.assert_close(got[k], v, rtol=1e-12, atol=1e-12, msg=k)


@pytest.mark.parametrize("c, sigmoid", [(2, True), (2, False), (3, False), (5, False)])
def test_parts_across_images_match_the_numpy_path(small_parts, monkeypatch, c, sigmoid):
    """3 images of 567 voxels in 16 parts of ~106: parts start and end inside images; masks and ignore_index."""
    probs, target, mask = _data(b=3, c=c, shape=(9, 7, 9), seed=11)
    if sigmoid:
        probs = probs[:, 1:]
    assert len(hn._part_bounds(probs.shape[0] * 567, c, 120)) == hn.MAX_PARTS
    for kwargs in ({}, {"mask": mask}, {"ignore_index": 1}):
        ref = _state("numpy", monkeypatch, c, probs, target, **kwargs)
        _assert_same(_state("numba", monkeypatch, c, probs, target, **kwargs), ref)


def test_the_bytes_do_not_depend_on_the_thread_count(small_parts, monkeypatch):
    """Parts are fixed by the input size and summed in order: 1, 2 and 3 threads give identical float sums."""
    probs, target, mask = _data(b=2, c=3, shape=(20, 10, 10), seed=2)
    states = []
    for n in (1, 2, 3):
        monkeypatch.setattr(parts, "cpu_threads", lambda n=n: n)
        states.append(_state("numba", monkeypatch, 3, probs, target, mask=mask))
    _assert_same(states[1], states[0], exact=True)
    _assert_same(states[2], states[0], exact=True)


@pytest.mark.parametrize("p_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("t_dtype", [torch.int16, torch.uint8, torch.bool, torch.float16])
def test_converted_blocks_match_the_numpy_path(monkeypatch, p_dtype, t_dtype):
    """Half-precision probabilities and unusual label types go through float32 / int64 blocks of CONVERT_VOXELS."""
    monkeypatch.setattr(hn, "CONVERT_VOXELS", 97)
    probs, target, mask = _data(b=2, c=2, shape=(8, 9, 5), seed=4)
    probs, target = probs[:, 1:].to(p_dtype), target.to(t_dtype)
    ref = _state("numpy", monkeypatch, 2, probs, target, mask=mask)
    _assert_same(_state("numba", monkeypatch, 2, probs, target, mask=mask), ref)


def test_strided_views_are_read_in_blocks(monkeypatch):
    """A non-contiguous view is copied block by block (bounded memory), not as a whole."""
    monkeypatch.setattr(hn, "CONVERT_VOXELS", 50)
    probs, target, mask = _data(b=2, c=3, shape=(8, 9, 10), seed=14)
    p, t, m = probs[..., ::2], target[..., ::2], mask[..., ::2]
    assert not p.is_contiguous()
    blocks = list(hn._blocks(p.reshape(2, 3, -1), t.reshape(2, 1, -1), m.reshape(2, 1, -1)))
    assert len(blocks) == 2 * 8 and max(b[0].shape[2] for b in blocks) == 50  # 360 voxels per image: 8 blocks
    ref = _state("numpy", monkeypatch, 3, p, t, mask=m)
    _assert_same(_state("numba", monkeypatch, 3, p, t, mask=m), ref)


def test_one_hot_targets_match_the_numpy_path(small_parts, monkeypatch):
    probs, target, mask = _data(b=2, c=4, shape=(10, 10, 6), seed=8)
    onehot = torch.nn.functional.one_hot(target[:, 0], 4).movedim(-1, 1)
    for t in (onehot, onehot.bool(), onehot.float()):
        ref = _state("numpy", monkeypatch, 4, probs, t, mask=mask)
        _assert_same(_state("numba", monkeypatch, 4, probs, t, mask=mask), ref)


def test_binary_kernel_equals_multiclass_kernel():
    """The two-class kernel (values in registers) and the any-class kernel agree on a two-channel softmax."""
    probs, target, _ = _data(b=2, c=2, shape=(12, 11, 7), seed=6)
    p, t = probs.reshape(2, 2, -1).numpy(), target.reshape(2, 1, -1).numpy()
    m = np.ones((1, 1), np.bool_)
    total, s_bins = 2 * 12 * 11 * 7, 300
    out = []
    hk = hn._kernels()
    for kernel in (hk.binary_kernel, hk.multiclass_kernel(2)):
        records, stats = np.zeros((3, s_bins, 2)), np.zeros(8)
        flags = (m, False, False, 0, False, s_bins, 1e-3, 1.2e-7, 32, 0, total)
        kernel(p, t, *flags, records.view(np.int32).reshape(-1), records.reshape(-1), stats)
        out.append((records.view(np.int32)[..., :2].copy(), records[..., 1].copy(), stats))
    assert out[0][0].sum() == 3 * total  # every voxel counted once per row (2 classes + top label)
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-13)
    np.testing.assert_allclose(out[0][2], out[1][2], rtol=1e-12)


def _run_kernel(kernel, p, t, m, use_mask, ignore, use_ignore, s_bins, c, lo, hi):
    records, stats = np.zeros((c + 1, s_bins, 2)), np.zeros(2 * c + 4)
    flags = (m, use_mask, False, ignore, use_ignore, s_bins, 1e-3, 1.2e-7, 32, lo, hi)
    kernel(p, t, *flags, records.view(np.int32).reshape(-1), records.reshape(-1), stats)
    return records.view(np.int32)[..., :2].copy(), records[..., 1].copy(), stats


@pytest.mark.parametrize("c, sigmoid", [(2, True), (2, False), (3, False), (5, False)])
@pytest.mark.parametrize("t_dtype", [torch.int64, torch.uint8, torch.float32])
@pytest.mark.parametrize("s_bins", [300, 7])
def test_blocked_kernels_equal_the_voxel_by_voxel_kernels(c, sigmoid, t_dtype, s_bins):
    """The blocked kernels (class-index labels) fill the same records as the scalar ones: every count exactly, the
    probability sums bit for bit (C classes: added in the same voxel order) or to 1e-13 (two classes, whose top-label
    row is summed from the class rows for paired voxels), Brier and NLL to 1e-12; over several blocks, ranges that
    start and end inside images, masks, an ignored label, an invalid label, a bad channel sum, probabilities of
    exactly 1/2 (ties) and an odd number of sub-bins (no sub-bin starts at 1/2)."""
    probs, target, mask = _data(b=2, c=c, shape=(13, 11, 9), seed=21)  # 1287 voxels per image: 3 blocks of 512
    if sigmoid:
        probs = probs[:, 1:]
    n = 13 * 11 * 9
    p = probs.reshape(2, probs.shape[1], n).contiguous().numpy()
    t = target.reshape(2, 1, n).to(t_dtype).numpy().copy()
    m = mask.reshape(2, n).numpy()
    t[0, 0, 7] = c  # an invalid label: counted where scored
    if c == 2:
        p[:, :, 50:90] = 0.5  # ties: the first class is the arg-max
        p[:, -1, 90:100] = np.nextafter(np.float32(0.5), np.float32(1))
        if not sigmoid:
            p[:, 0, 90:100] = 1 - p[:, -1, 90:100]
    if not sigmoid:
        p[1, :, 5] = p[1, :, 5] * 0.98  # a channel sum off by 2 %: counted (and still in [0, 1])
    scalar = hn._kernels()
    blocked = hn._block_kernels()
    pairs = []
    if c == 2:
        pairs.append((scalar.binary_kernel, blocked.binary_kernel, 1e-13))
    if not sigmoid:
        pairs.append((scalar.multiclass_kernel(c), blocked.multiclass_kernel(c), 0.0))
    for lo, hi in ((0, 2 * n), (100, n + 700), (n + 3, n + 4)):
        for use_mask, ignore, use_ignore in ((False, 0, False), (True, 0, False), (False, 1, True)):
            for reference, fast, rtol in pairs:
                args = (p, t, m if use_mask else np.ones((1, 1), np.bool_), use_mask, ignore, use_ignore, s_bins, c)
                ref = _run_kernel(reference, *args, lo, hi)
                got = _run_kernel(fast, *args, lo, hi)
                np.testing.assert_array_equal(got[0], ref[0])
                if rtol:
                    np.testing.assert_allclose(got[1], ref[1], rtol=rtol, atol=1e-13)
                else:
                    np.testing.assert_array_equal(got[1], ref[1])
                np.testing.assert_allclose(got[2], ref[2], rtol=1e-12, atol=1e-12)
                assert ref[0].sum() > 0 or hi - lo == 1  # not an empty comparison


@pytest.mark.parametrize("c, sigmoid", [(2, True), (2, False), (3, False)])
def test_blocked_kernels_flag_every_kind_of_bad_input(c, sigmoid):
    """NaN, inf and out-of-range probabilities, masked or not; invalid labels only where scored; channel sums only
    where checked (``sum_tol >= 0``)."""
    probs, target, mask = _data(b=1, c=c, shape=(10, 10, 10), seed=22)
    if sigmoid:
        probs = probs[:, 1:]
    p = probs.reshape(1, probs.shape[1], -1).contiguous().numpy()
    t = target.reshape(1, 1, -1).numpy()
    m = np.zeros((1, 1000), np.bool_)
    m[0, :500] = True
    blocked = hn._block_kernels()
    kernel = blocked.binary_kernel if c == 2 else blocked.multiclass_kernel(c)

    def flags(pp, tt, use_mask=False, sum_tol=1e-3):
        stats = np.zeros(2 * c + 4)
        records = np.zeros((c + 1, 60, 2))
        args = (pp, tt, m if use_mask else np.ones((1, 1), np.bool_), use_mask, False, 0, False, 60, sum_tol)
        kernel(*args, 1.2e-7, 32, 0, 1000, records.view(np.int32).reshape(-1), records.reshape(-1), stats)
        return dict(zip(("nll", "bad_sum", "bad_p", "bad_y"), stats[2 * c :], strict=True))

    assert flags(p, t) == {**flags(p, t), "bad_sum": 0, "bad_p": 0, "bad_y": 0}
    for value in (float("nan"), float("inf"), -1e-6, 1.5):
        bad = p.copy()
        bad[0, 0, 900] = value  # outside the mask: still a bad probability
        assert flags(bad, t, use_mask=True)["bad_p"] >= 1
    bad_t = t.copy()
    bad_t[0, 0, [3, 900]] = c
    assert flags(p, bad_t)["bad_y"] == 2
    assert flags(p, bad_t, use_mask=True)["bad_y"] == 1  # voxel 900 is masked out
    if not sigmoid:
        off = p.copy()
        off[0, :, 4] *= 0.5  # sums to 0.5, every probability still in [0, 1]
        assert flags(off, t)["bad_sum"] == 1
        assert flags(off, t, sum_tol=-1.0)["bad_sum"] == 0


@pytest.mark.parametrize("c", [2, 3])
def test_errors_in_any_part_raise_and_leave_no_trace(small_parts, c):
    """An invalid value in the last part of the last image is found; a NaN under the mask or on an ignored label still
    raises (the NumPy path range-checks every probability); an out-of-range label under the mask does not (labels
    count where scored)."""
    probs, target, mask = _data(b=2, c=c, shape=(10, 10, 6), seed=9)
    h = CalibrationHistogram(c).update(probs, target)
    before = {k: v.clone() for k, v in h.state_dict().items() if isinstance(v, torch.Tensor)}
    late = probs.clone()
    late[-1, 0, -1, -1, -1] = 1.25
    hidden_nan = probs.clone()
    hidden_nan[1, 1, 3, 3, 3] = float("nan")
    bad_label = target.clone()
    bad_label[-1, 0, -1, -1, -1] = c
    keep = mask.clone()
    keep[1, 0, 3, 3, 3] = False
    ignored = target.clone()
    ignored[1, 0, 3, 3, 3] = c  # the NaN voxel's label is the ignored one
    for args, kwargs, msg in (
        ((late, target), {}, r"lie in \[0, 1\]"),
        ((hidden_nan, target), {"mask": keep}, "NaN"),
        ((hidden_nan, ignored), {"ignore_index": c}, "NaN"),
        ((probs, bad_label), {}, "labels must lie"),
    ):
        with pytest.raises(ValueError, match=msg):
            h.update(*args, **kwargs)
    _assert_same({k: getattr(h, k) for k in before}, before, exact=True)
    keep_out = mask.clone()
    keep_out[-1, 0, -1, -1, -1] = False
    h.update(probs, bad_label, mask=keep_out)  # the bad label is not scored


def test_without_numba_the_numpy_path_is_used():
    code = "import monai_meep.metrics.histogram as h; print(h._CPU_BACKEND)"
    env = {**os.environ, "MONAI_MEEP_NUMBA": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numpy"


def test_parts_stay_below_the_int32_count_limit(monkeypatch):
    """A part's counts are int32: however large the input, no part may hold MAX_PART_VOXELS voxels or more (here
    shrunk to 50, so 2 x 630 voxels need 26 parts, more than MAX_PARTS)."""
    monkeypatch.setattr(hn, "MAX_PART_VOXELS", 50)
    bounds = hn._part_bounds(1260, 3, 120)
    assert len(bounds) == 26 and max(hi - lo for lo, hi in bounds) <= 50
    flat = [x for bound in bounds for x in bound]  # lo_0, hi_0, lo_1, hi_1, ...: contiguous when hi_k == lo_k+1
    assert flat[0] == 0 and flat[-1] == 1260 and flat[1:-1:2] == flat[2::2]
    probs, target, mask = _data(b=2, c=3, shape=(9, 10, 7), seed=12)
    ref = _state("numpy", monkeypatch, 3, probs, target, mask=mask)
    _assert_same(_state("numba", monkeypatch, 3, probs, target, mask=mask), ref)


@pytest.mark.parametrize("c", [2, 3])
@pytest.mark.parametrize("t_dtype", [torch.int32, torch.uint8, torch.float32, torch.float64])
def test_native_label_dtypes_and_non_integer_labels(monkeypatch, c, t_dtype):
    """Labels read in their own dtype give the NumPy path's state; NaN, inf and 1.5 labels are refused."""
    probs, target, mask = _data(b=2, c=c, shape=(7, 6, 5), seed=13)
    target = target.to(t_dtype)
    ref = _state("numpy", monkeypatch, c, probs, target, mask=mask)
    _assert_same(_state("numba", monkeypatch, c, probs, target, mask=mask), ref)
    if t_dtype.is_floating_point:
        for bad, msg in ((float("nan"), "NaN or inf"), (float("inf"), "NaN or inf"), (1.5, "non-integer")):
            t = target.clone()
            t[1, 0, 2, 2, 2] = bad
            with pytest.raises(ValueError, match=msg):
                CalibrationHistogram(c).update(probs, t)


def test_kernels_compile_without_a_writable_cache(monkeypatch):
    """Numba refuses ``cache=True`` where no folder is writable (a read-only install, no home); the kernels then
    compile per process instead of failing at import (one helper, ``monai_meep.kernels._numba.jit``, for both the
    histogram and the MEEP regulariser kernels)."""
    from monai_meep.kernels import _numba

    assert hn._kernels()._jit is _numba.jit
    real_njit = _numba.numba.njit

    def njit(*args, cache=False, **kwargs):
        if cache:
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(_numba.numba, "njit", njit)

    def add_one(x):
        return x + 1

    assert _numba.jit(add_one)(41) == 42
    assert _numba.jit(fastmath=True)(add_one)(1.5) == 2.5


def test_numba_is_imported_on_first_use_not_with_the_package():
    code = "import sys, monai_meep; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_numba_that_fails_to_import_falls_back_to_numpy(monkeypatch):
    """One warning, then the NumPy path computes every update (same state)."""
    import monai_meep.metrics

    monkeypatch.delattr(monai_meep.metrics, "_histogram_numba_kernels", raising=False)
    monkeypatch.setitem(sys.modules, "monai_meep.metrics._histogram_numba_kernels", None)  # import raises
    with pytest.warns(UserWarning, match="NumPy path"):
        assert hn._kernels.__wrapped__() is None
    monkeypatch.setattr(hn, "_kernels", lambda: None)
    probs, target, mask = _data(b=2, c=3, shape=(6, 5, 4), seed=15)
    ref = _state("numpy", monkeypatch, 3, probs, target, mask=mask)
    _assert_same(_state("numba", monkeypatch, 3, probs, target, mask=mask), ref, exact=True)
