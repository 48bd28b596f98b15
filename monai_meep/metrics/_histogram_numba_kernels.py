# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The Numba kernels of the compiled CPU update (:mod:`._histogram_numba` runs them).

Imported on the first CPU update rather than with the package: importing Numba costs about 0.4 s, which a user who
only scores on the GPU (or never calls a metric) should not pay at ``import monai_meep``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from monai_meep.kernels._numba import inline, jit

from ._histogram_common import FLAG_BAD_P, FLAG_BAD_SUM, FLAG_BAD_Y, FLAG_NLL

__all__ = ["binary_kernel", "multiclass_kernel"]


_jit = jit
_inline = inline


@_inline
def _index_label(v, c, ignore, use_ignore):
    """``(ok, ignored)`` of the class-index label ``v``, without branches (the blocked kernels vectorise over it):
    ``ok`` for an integer value in ``[0, c)``, compared in the label's own type before any conversion (NaN fails both
    tests, inf the range test); ``ignored`` for ``ignore_index``."""
    return (v == math.floor(v)) & (v >= 0) & (v < c), use_ignore & (v == ignore)


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
    ok, ignored = _index_label(t[b, 0, i], c, ignore, use_ignore)
    if ignored:
        return -1
    return int(t[b, 0, i]) if ok else -2


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
def binary_kernel(
    p, t, m, use_mask, onehot, ignore, use_ignore, s_bins, sum_tol, eps, group, lo, hi, counts, records, stats
):
    """Two classes (one sigmoid channel or two softmax channels): every per-class value lives in a register.

    ``counts`` (int32) and ``records`` (float64) are two flat views of one part's records (see
    ``_histogram_numba._run_parts``): the record of row ``r`` (class, or ``C`` for the top label) and sub-bin ``s``
    is ``at = r * S + s``, its counts ``counts[4 at + hit]`` and its probability sum ``records[2 at + 1]``.
    ``stats``: Brier sums ``(C,)``, positive-stratum Brier sums ``(C,)``, then the entries named by
    ``FLAG_NLL .. FLAG_BAD_Y`` (``_histogram_common``).
    """
    n = p.shape[2]
    sigmoid = p.shape[1] == 1
    scale, last = float(s_bins), s_bins - 1
    brier0 = brier1 = pos0 = pos1 = nll = 0.0
    prod = 1.0
    in_group = bad_p = bad_y = bad_sum = 0
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
                bad_sum += abs((q0 + q1) - 1.0) > sum_tol
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
    _finish(stats, 2, nll - math.log(prod), bad_sum, bad_p, bad_y)


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
def multiclass_kernel(c: int):
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
            _finish(stats, c, 0.0, 0, bad_p, 0)
            return
        n = p.shape[2]
        scale, last = float(s_bins), s_bins - 1
        brier = np.zeros(2 * c)
        nll = 0.0
        prod = 1.0
        in_group = bad_y = bad_sum = 0
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
                if sum_tol >= 0.0:
                    bad_sum += abs(total - 1.0) > sum_tol
                top += (c - pred) * s_bins  # the same sub-bin in the top-label row
                counts[4 * top + (pred == y)] += 1
                records[2 * top + 1] += conf
                d = qy - 1.0
                brier[c + y] += d * d
                nll, prod, in_group = _nll_step(nll, prod, in_group, qy, eps, group)
        stats[: 2 * c] += brier
        _finish(stats, c, nll - math.log(prod), bad_sum, bad_p, bad_y)

    return kernel


@_jit
def _finish(stats, c, nll, bad_sum, bad_p, bad_y):
    """Add a part's NLL and counts of invalid channel sums, probabilities and labels after its Brier sums."""
    stats[2 * c + FLAG_NLL] += nll
    stats[2 * c + FLAG_BAD_SUM] += bad_sum
    stats[2 * c + FLAG_BAD_P] += bad_p
    stats[2 * c + FLAG_BAD_Y] += bad_y
