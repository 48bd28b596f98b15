# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Compiled CPU update path of :class:`~monai_meep.metrics.CalibrationHistogram`: one pass per voxel, in Numba.

Why compiled: the NumPy path (:mod:`._histogram_numpy`) makes about twenty passes over float64 temporaries and five
single-threaded ``bincount`` calls per chunk; here each voxel is read once and every statistic (validation, marginal
and top-label sub-bins, Brier, NLL) is added in the same loop, straight from the network's dtype and layout (no
float64 copy, no chunk workspace).

Parallelism without a thread pool that spins: the voxels are split into a number of contiguous *parts* that depends
only on the input size (never on the thread count), each part adds into its own private histogram, and the parts are
summed in a fixed order. Parts are run by plain Python threads on a ``nogil`` kernel, so the result is the same bytes
whatever the number of threads, and a descheduled thread on a shared machine delays only its own parts (an OpenMP
barrier would stall every thread).

Errors are detected in the same pass (bad probabilities anywhere, bad labels or one-hot vectors where scored, channel
sums off by more than the tolerance); the message then comes from re-running the NumPy path on the same input, which
raises exactly what it would have raised, so both paths refuse the same inputs with the same words.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from monai.utils import optional_import

from ._histogram_common import ChunkRules, Workspace

numba, HAS_NUMBA = optional_import("numba")

__all__ = ["HAS_NUMBA", "accumulate_numba"]

# Voxels per part at least (smaller inputs make fewer parts), and at most this many parts: 16 keeps 2..16 threads
# busy; the private histograms cost 16 (C + 1) S bytes each, capped by PART_BYTES.
MIN_PART_VOXELS = 1 << 20
MAX_PARTS = 16
PART_BYTES = 32 << 20
# a part's counts are int32 (half the cache footprint of int64), so a part holds fewer voxels than 2^31
MAX_PART_VOXELS = (1 << 31) - 1
# non-float32/64 probabilities (float16, bfloat16) are converted to float32 in blocks of this many voxels
CONVERT_VOXELS = 1 << 22
# label dtypes the kernel reads as they are (others are converted per block, like float16 probabilities)
_NATIVE_LABELS = (torch.int64, torch.int32, torch.uint8, torch.float32, torch.float64)
# flags of the per-part statistics vector after the Brier sums: [nll, max |sum - 1|, bad probs, bad labels]
_NLL, _SUM_DEV, _BAD_P, _BAD_Y = range(4)


def _jit(func):
    """Compile ``func`` with Numba: ``nogil`` (parts run on plain threads), ``error_model="numpy"`` (no
    ZeroDivisionError checks in the loops) and ``cache`` (each specialisation compiles once per installation, not once
    per process) where Numba finds a writable cache folder; on a read-only install without one, per process."""
    if not HAS_NUMBA:
        return func
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy")(func)
    except RuntimeError:  # "cannot cache function ...: no locator available": nowhere to write the cache
        return numba.njit(nogil=True, error_model="numpy")(func)


_inline = numba.njit(inline="always", error_model="numpy") if HAS_NUMBA else (lambda f: f)


@_inline
def _label(t, b, i, onehot, c, ignore, use_ignore):
    """Class of voxel ``i`` of image ``b``: ``>= 0``; ``-1``: ignored label; ``-2``: invalid label or one-hot vector."""
    if onehot:
        y = -1
        for k in range(c):
            v = t[b, k, i]
            if v == 1:
                y = k if y == -1 else -2
            elif v != 0:
                y = -2
        return -2 if y == -1 else y
    v = t[b, 0, i]
    if use_ignore and v == ignore:
        return -1
    # compared in the label's own type before any conversion: NaN fails both tests, inf the range test
    if v == math.floor(v) and 0 <= v < c:
        return int(v)
    return -2


@_inline
def _nll_step(nll, prod, in_group, qy, eps, group):
    """Add ``-log(max(qy, eps))`` to the NLL: one log per group of ``group`` voxels (``eps ** group`` is a normal
    float64, so the running product cannot underflow); returns the new ``(nll, prod, in_group)``."""
    prod *= max(qy, eps)
    in_group += 1
    if in_group == group:
        return nll - math.log(prod), 1.0, 0
    return nll, prod, in_group


@_jit
def _binary_kernel(
    p, t, m, use_mask, onehot, ignore, use_ignore, s_bins, sum_tol, eps, group, lo, hi, counts, records, stats
):
    """Two classes (one sigmoid channel or two softmax channels): every per-class value lives in a register.

    ``counts`` (int32) and ``records`` (float64) are two flat views of one part's records (see ``_run_parts``): the
    record of row ``r`` (class, or ``C`` for the top label) and sub-bin ``s`` is ``at = r * S + s``, its counts
    ``counts[4 at + hit]`` and its probability sum ``records[2 at + 1]``. ``stats``: Brier sums ``(C,)``,
    positive-stratum Brier sums ``(C,)``, then the entries named by ``_NLL.._BAD_Y``.
    """
    n = p.shape[2]
    sigmoid = p.shape[1] == 1
    scale, last = float(s_bins), s_bins - 1
    brier0 = brier1 = pos0 = pos1 = nll = max_dev = 0.0
    prod = 1.0
    in_group = bad_p = bad_y = 0
    for b in range(lo // n, (hi - 1) // n + 1):
        for i in range(max(lo - b * n, 0), min(hi - b * n, n)):
            q1 = np.float64(p[b, 1 - sigmoid, i])
            q0 = 1.0 - q1 if sigmoid else np.float64(p[b, 0, i])
            # probabilities are range-checked at every voxel, masked or not (as validate_chunk does); NaN fails too
            if not (q0 >= 0.0 and q0 <= 1.0 and q1 >= 0.0 and q1 <= 1.0):
                bad_p += 1
                continue
            if use_mask and not m[b, i]:
                continue
            y = _label(t, b, i, onehot, 2, ignore, use_ignore)
            if y < 0:
                bad_y += y == -2
                continue
            if sum_tol >= 0.0:
                max_dev = max(max_dev, abs((q0 + q1) - 1.0))
            s0 = min(int(q0 * scale), last)  # truncation == floor for q >= 0; q == 1 goes to the closed last bin
            s1 = min(int(q1 * scale), last)
            counts[4 * s0 + (y == 0)] += 1
            records[2 * s0 + 1] += q0
            counts[4 * (s_bins + s1) + y] += 1
            records[2 * (s_bins + s1) + 1] += q1
            d0 = q0 - (y == 0)
            d1 = q1 - y
            brier0 += d0 * d0
            brier1 += d1 * d1
            # top label: the first arg-max wins ties, as np.argmax / torch.max
            pred = np.int64(q1 > q0)
            top = 2 * s_bins + (s1 if pred else s0)
            counts[4 * top + (pred == y)] += 1
            records[2 * top + 1] += max(q0, q1)
            if y:
                pos1 += d1 * d1
                qy = q1
            else:
                pos0 += d0 * d0
                qy = q0
            nll, prod, in_group = _nll_step(nll, prod, in_group, qy, eps, group)
    stats[0] += brier0
    stats[1] += brier1
    stats[2] += pos0
    stats[3] += pos1
    _finish(stats, 2, nll - math.log(prod), max_dev, bad_p, bad_y)


@_jit
def _count_invalid(p, lo, hi):
    """Probabilities outside [0, 1] or NaN among voxels ``[lo, hi)``: one tight loop per channel, vectorised."""
    n, bad = p.shape[2], 0
    for b in range(lo // n, (hi - 1) // n + 1):
        for k in range(p.shape[1]):
            for i in range(max(lo - b * n, 0), min(hi - b * n, n)):
                v = p[b, k, i]
                bad += not (v >= 0.0 and v <= 1.0)
    return bad


@functools.cache
def _multiclass_kernel(c: int):
    """The any-class kernel compiled for ``c`` classes (``p`` has ``c`` channels), same arguments as the two-class one.

    The class count is a compile-time constant of each kernel, so LLVM unrolls the class loops (about 20 % faster at
    three classes than a run-time count); each count compiles once, and Numba caches it on disk.
    """

    @_jit
    def kernel(
        p, t, m, use_mask, onehot, ignore, use_ignore, s_bins, sum_tol, eps, group, lo, hi, counts, records, stats
    ):
        """One loop over the ``c`` classes of each voxel.

        Probabilities are range-checked in that loop (an invalid one is counted and binned as 0: the part is discarded
        anyway); voxels skipped before it (masked, ignored) are checked first in a separate, vectorised pass, because
        every probability must be valid, scored or not.
        """
        bad_p = _count_invalid(p, lo, hi) if use_mask or use_ignore else 0
        if bad_p:
            _finish(stats, c, 0.0, 0.0, bad_p, 0)
            return
        n = p.shape[2]
        scale, last = float(s_bins), s_bins - 1
        brier = np.zeros(2 * c)
        nll = max_dev = 0.0
        prod = 1.0
        in_group = bad_y = 0
        for b in range(lo // n, (hi - 1) // n + 1):
            for i in range(max(lo - b * n, 0), min(hi - b * n, n)):
                if use_mask and not m[b, i]:
                    continue
                y = _label(t, b, i, onehot, c, ignore, use_ignore)
                if y < 0:
                    bad_y += y == -2
                    continue
                conf, pred, top, qy, total = -1.0, 0, 0, 0.0, 0.0
                for k in range(c):
                    q = np.float64(p[b, k, i])
                    total += q
                    valid = (q >= 0.0) & (q <= 1.0)  # False for NaN
                    bad_p += not valid
                    q = q if valid else 0.0  # keeps the sub-bin index in range
                    at = k * s_bins + min(int(q * scale), last)
                    hit = k == y
                    counts[4 * at + hit] += 1
                    records[2 * at + 1] += q
                    d = q - hit
                    brier[k] += d * d
                    gt = q > conf  # strict: the first arg-max wins ties
                    conf = max(conf, q)
                    pred = k if gt else pred
                    top = at if gt else top
                    qy = q if hit else qy
                max_dev = max(max_dev, abs(total - 1.0))
                top += (c - pred) * s_bins  # the same sub-bin in the top-label row
                counts[4 * top + (pred == y)] += 1
                records[2 * top + 1] += conf
                d = qy - 1.0
                brier[c + y] += d * d
                nll, prod, in_group = _nll_step(nll, prod, in_group, qy, eps, group)
        stats[: 2 * c] += brier
        _finish(stats, c, nll - math.log(prod), max_dev, bad_p, bad_y)  # max_dev is ignored without sum_tol

    return kernel


@_jit
def _finish(stats, c, nll, max_dev, bad_p, bad_y):
    stats[2 * c + _NLL] += nll
    stats[2 * c + _SUM_DEV] = max(stats[2 * c + _SUM_DEV], max_dev)
    stats[2 * c + _BAD_P] += bad_p
    stats[2 * c + _BAD_Y] += bad_y


def _part_bounds(total: int, c: int, s_bins: int) -> list[tuple[int, int]]:
    """Contiguous voxel ranges, as many as the input size (not the thread count) and the memory cap allow."""
    part_bytes = 16 * (c + 1) * s_bins
    parts = max(1, min(MAX_PARTS, total // MIN_PART_VOXELS, PART_BYTES // part_bytes), -(-total // MAX_PART_VOXELS))
    edges = [total * k // parts for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts) if edges[k + 1] > edges[k]]


def _num_threads() -> int:
    """Threads to run parts on: torch's setting (users already tune it), at most the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cpus))


def _as_kernel_input(p: torch.Tensor, t: torch.Tensor, m: torch.Tensor | None):
    p = p if p.dtype in (torch.float32, torch.float64) else p.float()
    if t.dtype == torch.bool:
        t = t.view(torch.uint8)
    elif t.dtype not in _NATIVE_LABELS:  # exact: int8 / int16 in int64, float16 / bfloat16 in float64
        t = t.double() if t.is_floating_point() else t.long()
    arrays = [x.detach().contiguous().numpy() for x in (p, t)]
    mask = np.ones((1, 1), np.bool_) if m is None else m.detach().contiguous().numpy()[:, 0]
    return arrays[0], arrays[1], mask


def _blocks(p3: torch.Tensor, t3: torch.Tensor, m3: torch.Tensor | None):
    """The whole input at once when the kernel reads it as it is (contiguous, native dtypes), else contiguous
    float32 / float64 blocks of ``CONVERT_VOXELS`` voxels, so memory stays bounded for float16 / bfloat16, unusual
    label types or strided views."""
    native = p3.dtype in (torch.float32, torch.float64) and t3.dtype in (*_NATIVE_LABELS, torch.bool)
    if native and all(x is None or x.is_contiguous() for x in (p3, t3, m3)):
        yield _as_kernel_input(p3, t3, m3)
        return
    b, n = p3.shape[0], p3.shape[2]
    for i in range(b):
        for k in range(0, n, CONVERT_VOXELS):
            sl = slice(k, min(n, k + CONVERT_VOXELS))
            m = None if m3 is None else m3[i : i + 1, :, sl]
            yield _as_kernel_input(p3[i : i + 1, :, sl], t3[i : i + 1, :, sl], m)


def accumulate_numba(
    acc: dict[str, np.ndarray],
    p3: torch.Tensor,
    t3: torch.Tensor,
    m3: torch.Tensor | None,
    rules: ChunkRules,
    c: int,
    s_bins: int,
) -> bool:
    """Add the statistics of a whole update to ``acc`` (NumPy views of the update's delta state) in one pass.

    Args:
        acc: zero-initialised delta state, as ``accumulate_numpy`` receives it.
        p3: ``(B, C', N)`` probabilities on the CPU (``C' == 1``: sigmoid foreground).
        t3: ``(B, 1, N)`` class indices or ``(B, C, N)`` one-hot.
        m3: optional boolean ``(B, 1, N)`` mask.
        rules: the update's :class:`~._histogram_common.ChunkRules`.
        c: number of classes.
        s_bins: number of sub-bins.

    Returns:
        ``True`` if every voxel was valid and ``acc`` holds the update; ``False`` if some probability, label or
        channel sum is invalid: ``acc`` is then partly filled and must be discarded, and the caller re-runs the NumPy
        path to raise its error.
    """
    eps = float(torch.finfo(p3.dtype).eps)  # of the input dtype, as the NumPy path: before any float32 conversion
    sum_tol = -1.0 if rules.sum_tol is None or p3.shape[1] == 1 else float(rules.sum_tol)
    ignore = 0 if rules.ignore_index is None else int(rules.ignore_index)
    scalars = (s_bins, sum_tol, eps, Workspace.group(eps))
    kernel = _binary_kernel if c == 2 else _multiclass_kernel(c)
    flags = np.zeros(4)
    for p, t, m in _blocks(p3, t3, m3):
        if p.shape[0] * p.shape[2] == 0:
            continue
        inputs = (p, t, m, m3 is not None, rules.onehot, ignore, rules.ignore_index is not None)
        counts, sums, stats = _run_parts(kernel, (*inputs, *scalars), c, s_bins)
        tail = stats[:, 2 * c :]
        flags[_NLL] += tail[:, _NLL].sum()
        flags[_SUM_DEV] = max(flags[_SUM_DEV], tail[:, _SUM_DEV].max())
        flags[_BAD_P] += tail[:, _BAD_P].sum()
        flags[_BAD_Y] += tail[:, _BAD_Y].sum()
        if flags[_BAD_P] or flags[_BAD_Y] or (sum_tol >= 0 and flags[_SUM_DEV] > sum_tol):
            return False
        part = counts.astype(np.int64).sum(0)  # (C + 1, S, [not hit, hit])
        acc["counts"] += part[:c].sum(-1)
        acc["positives"] += part[:c, :, 1]
        acc["top_counts"] += part[c].sum(-1)
        acc["top_correct"] += part[c, :, 1]
        fsum = sums.sum(0)
        acc["prob_sums"] += fsum[:c]
        acc["top_conf_sums"] += fsum[c]
        ssum = stats.sum(0)
        acc["brier_sums"] += ssum[:c]
        acc["brier_pos_sums"] += ssum[c : 2 * c]
    acc["nll_sum"] += flags[_NLL]
    return True


def _run_parts(kernel, args: tuple, c: int, s_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``kernel`` over the parts of one block, each into its own state; returns the per-part states."""
    p = args[0]
    bounds = _part_bounds(p.shape[0] * p.shape[2], c, s_bins)
    # one 16-byte record per (row, sub-bin): int32 [not hit, hit] counts, then the float64 probability sum, so a
    # voxel's class touches one cache line, and a part's records fit in a 512 KiB L2 cache up to C = 4
    records = np.zeros((len(bounds), c + 1, s_bins, 2), np.float64)
    counts = records.view(np.int32)[..., :2]
    sums = records[..., 1]
    stats = np.zeros((len(bounds), 2 * c + 4), np.float64)

    def run(k: int, lo: int | None = None, hi: int | None = None) -> None:
        lo, hi = bounds[k] if lo is None else (lo, hi)
        kernel(*args, lo, hi, records[k].view(np.int32).reshape(-1), records[k].reshape(-1), stats[k])

    run(0, 0, 0)  # no voxels: compiles (or loads) the specialisation here, before any worker thread needs it
    workers = min(_num_threads(), len(bounds))
    if workers == 1:
        for k in range(len(bounds)):
            run(k)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="monai_meep_hist") as pool:
            list(pool.map(run, range(len(bounds))))
    return counts, sums, stats
