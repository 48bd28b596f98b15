# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Blocked Numba kernels of the compiled CPU update, for class-index labels (the common case).

The voxel-by-voxel kernels of :mod:`._histogram_numba_kernels` do everything in one scalar loop: the scatter into the
sub-bin records forces it to stay scalar, and its branches and spilled registers cost about 40 cycles per voxel. Here
each block of :data:`BLOCK` voxels is done in three loops:

1. *rows* (vectorised): validity, label, sub-bin record index (with its hit bit) of every class row and of the
   top-label row, the NLL factor; the validity counts as sums. No branch depends on the data, so LLVM vectorises it.
   The Brier sums are a second vectorised loop per class, over the probabilities and the block's labels.
2. *NLL*: the product of each group of ``group`` factors, then one log (as the scalar kernels: ``eps ** group``
   cannot underflow).
3. *scatter* (scalar): ``+1`` into each row's record count and ``+q`` into its probability sum, voxel by voxel, in
   voxel order (so the probability sums are added in the same order as the scalar kernels: the records are the same
   bytes; with two classes the top-label row is summed from the class rows for most voxels, see
   :func:`binary_kernel`, so its sums agree to about 1e-16). The scatter is written out per row: moving the record
   update into an inlined helper made this loop three times slower.

The kernels take the scalar kernels' arguments and fill the same records and statistics (``_finish``), so
``_histogram_numba`` runs either through the same parts. One-hot targets keep the scalar kernels.

The vectoriser is sensitive to the shape of loop 1 (the number of arrays written, branches on flags): keep it free of
data-dependent branches and of ``max`` reductions (which need ``nnan``), and measure with
``python -m benchmarks.bench_metrics`` after any change.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from monai_meep.kernels._numba import jit

from ._histogram_numba_kernels import _finish, _index_label

__all__ = ["BLOCK", "binary_kernel", "multiclass_kernel"]

# voxels per block: the block's scratch ((C + 1) int64 record indices, two float64 values, one int64 label per voxel)
# stays in the 48 KiB L1 cache up to C = 8
BLOCK = 512

# reassociation lets LLVM vectorise the float sums; no "nnan" / "ninf": NaN and inf must still fail the range tests
_fast_jit = jit(fastmath={"reassoc", "nsz"})


@_fast_jit
def _binary_rows(p1, p0, sigmoid, t1, m1, ignore, use_ignore, s_bins, tol, eps, ci, fy, acc):
    """Loop 1 of two classes over 1-D block views: ``ci[r, j]`` record index of voxel ``j`` in row ``r``
    (class 0, class 1, top label) as ``4 * record + hit``, ``-1`` in row 0 for a voxel not scored and in row 2 for a
    paired voxel (see :func:`binary_kernel`); ``fy[j]``: its NLL factor. Adds the Brier sums and the validity counts
    to ``acc``."""
    nb = p1.shape[0]
    scale, last, half = float(s_bins), s_bins - 1, s_bins // 2
    brier0 = brier1 = pos0 = pos1 = 0.0
    bad_p = 0
    bad_y = 0
    bad_sum = 0
    for j in range(nb):
        q1 = np.float64(p1[j])
        q0 = np.float64(p0[j])
        q0 = 1.0 - q1 if sigmoid else q0
        valid = (q0 >= 0.0) & (q0 <= 1.0) & (q1 >= 0.0) & (q1 <= 1.0)  # False for NaN
        bad_p += not valid
        live = valid & m1[j]
        v = t1[j]
        ok, ign = _index_label(v, 2, ignore, use_ignore)
        h1 = ok & (v == 1)
        h0 = ok & (v == 0)
        bad_y += live & (not ok) & (not ign)
        scored = live & ok & (not ign)
        q0 = q0 if valid else 0.0  # keeps the record index in range
        q1 = q1 if valid else 0.0
        bad_sum += scored & (abs((q0 + q1) - 1.0) > tol)
        s0 = min(np.int64(q0 * scale), last)  # truncation == floor for q >= 0; q == 1 goes to the closed last bin
        s1 = min(np.int64(q1 * scale), last)
        pred = q1 > q0  # the first arg-max wins ties, as np.argmax
        top = s1 if pred else s0
        # "paired": one class entry in a sub-bin >= half, the other below; that one is then the larger probability,
        # so the top-label entry (see binary_kernel)
        paired = (s0 >= half) != (s1 >= half)
        ci[0, j] = 4 * s0 + h0 if scored else -1
        ci[1, j] = 4 * (s_bins + s1) + h1
        ci[2, j] = -1 if paired else 4 * (2 * s_bins + top) + (pred == h1)
        qy = q1 if h1 else q0  # (computed before the Brier terms: in the other order LLVM does not vectorise)
        d0 = q0 - h0
        d1 = q1 - h1
        e0 = d0 * d0 if scored else 0.0
        e1 = d1 * d1 if scored else 0.0
        brier0 += e0
        brier1 += e1
        pos0 += e0 if h0 else 0.0
        pos1 += e1 if h1 else 0.0
        fy[j] = max(qy, eps) if scored else 1.0
    acc[0] += brier0
    acc[1] += brier1
    acc[2] += pos0
    acc[3] += pos1
    acc[4] += bad_sum
    acc[5] += bad_p
    acc[6] += bad_y


@_fast_jit
def _nll(fy, nb, group):
    """Loop 2: ``-sum log(fy[:nb])``, one log per group of ``group`` factors."""
    nll = 0.0
    for g0 in range(0, nb, group):
        factors = fy[g0 : min(g0 + group, nb)]
        prod = 1.0
        for j in range(factors.shape[0]):
            prod *= factors[j]
        nll -= math.log(prod)
    return nll


@jit
def _binary_scatter(ci, p1, p0, sigmoid, nb, counts, records, pair_counts, pair_records):
    """Loop 3 of two classes, in voxel order: a paired voxel's two class entries into the pair records, any other
    scored voxel's three entries into the records."""
    one = np.uint64(1)
    for j in range(nb):
        first = ci[0, j]
        if first < 0:
            continue
        q1 = np.float64(p1[j])
        q0 = 1.0 - q1 if sigmoid else np.float64(p0[j])
        at0, at1, top = np.uint64(first), np.uint64(ci[1, j]), ci[2, j]
        # record (at >> 2) has its counts at int32 at (count + hit) and its probability sum at float64 2 (at >> 2) + 1
        if top < 0:
            pair_counts[at0] += 1
            pair_records[(at0 >> one) | one] += q0
            pair_counts[at1] += 1
            pair_records[(at1 >> one) | one] += q1
        else:
            counts[at0] += 1
            records[(at0 >> one) | one] += q0
            counts[at1] += 1
            records[(at1 >> one) | one] += q1
            at = np.uint64(top)
            counts[at] += 1
            records[(at >> one) | one] += max(q0, q1)


@jit
def _add_pairs(s_bins, pair_counts, pair_records, counts, records):
    """Add the pair records to the class rows, and their sub-bins >= half of both class rows to the top-label row."""
    for at in range(2 * s_bins):
        counts[4 * at] += pair_counts[4 * at]
        counts[4 * at + 1] += pair_counts[4 * at + 1]
        records[2 * at + 1] += pair_records[2 * at + 1]
    for s in range(s_bins // 2, s_bins):
        top, other = 2 * s_bins + s, s_bins + s
        counts[4 * top] += pair_counts[4 * s] + pair_counts[4 * other]
        counts[4 * top + 1] += pair_counts[4 * s + 1] + pair_counts[4 * other + 1]
        records[2 * top + 1] += pair_records[2 * s + 1] + pair_records[2 * other + 1]


@jit
def binary_kernel(
    p, t, m, use_mask, onehot, ignore, use_ignore, s_bins, sum_tol, eps, group, lo, hi, counts, records, stats
):
    """Two classes (one sigmoid channel or two softmax channels), class-index labels: the arguments and outputs of
    :func:`._histogram_numba_kernels.binary_kernel` (``onehot`` is not read: one-hot targets take that kernel).

    With two classes the top-label entry of a voxel is one of its two class entries, so most voxels need not be
    scattered a third time: a voxel is *paired* when one class entry lies in a sub-bin ``>= h = S // 2`` and the
    other below. Sub-bins are monotone in the probability, so the entry at ``>= h`` has the larger probability: it is
    the top-label entry (same sub-bin, probability and hit). Summed over paired voxels, the top-label row is then
    exactly the sum of the two class rows over the sub-bins ``>= h``. Paired voxels go into private pair records,
    added to the class rows and the top-label row at the end (:func:`_add_pairs`); the others (both entries on one
    side: probabilities near 1/2) are scattered row by row. Counts are exact either way; the
    probability sums are added in a different order than the voxel-by-voxel kernel's (equal to about 1e-16).
    """
    n = p.shape[2]
    sigmoid = p.shape[1] == 1
    pair_records = np.zeros(4 * s_bins)  # the class rows' records: (2, S) x [int32 counts, float64 sum]
    pair_counts = pair_records.view(np.int32)
    ci = np.empty((3, BLOCK), np.int64)
    fy = np.empty(BLOCK)
    acc = np.zeros(7)
    unmasked = np.ones(BLOCK, np.bool_)
    tol = sum_tol if sum_tol >= 0.0 else np.inf
    nll = 0.0
    for b in range(lo // n, (hi - 1) // n + 1):
        start, stop = max(lo - b * n, 0), min(hi - b * n, n)
        p1, p0, t1, m1 = p[b, 1 - sigmoid], p[b, 0], t[b, 0], m[b if use_mask else 0]
        for i0 in range(start, stop, BLOCK):
            i1 = min(i0 + BLOCK, stop)
            mask = m1[i0:i1] if use_mask else unmasked[: i1 - i0]
            q1, q0 = p1[i0:i1], p0[i0:i1]
            _binary_rows(q1, q0, sigmoid, t1[i0:i1], mask, ignore, use_ignore, s_bins, tol, eps, ci, fy, acc)
            nll += _nll(fy, i1 - i0, group)
            _binary_scatter(ci, q1, q0, sigmoid, i1 - i0, counts, records, pair_counts, pair_records)
    _add_pairs(s_bins, pair_counts, pair_records, counts, records)
    for k in range(4):
        stats[k] += acc[k]
    _finish(stats, 2, nll, int(acc[4]), int(acc[5]), int(acc[6]))


@functools.cache
def multiclass_kernel(c: int):
    """The blocked kernel compiled for ``c`` classes, class-index labels: the arguments and outputs of
    :func:`._histogram_numba_kernels.multiclass_kernel` (``onehot`` is not read). ``c`` is a compile-time constant,
    so the class loops unroll."""

    @_fast_jit
    def rows(pb, n, i0, nb, t1, m1, ignore, use_ignore, s_bins, tol, eps, ci, fv, ylab, acc):
        """Loop 1 over the block ``[i0, i0 + nb)`` of one image (``pb``: its ``(c, n)`` probabilities, flattened):
        ``ci[r, j]`` = ``4 * record + hit`` of voxel ``j`` in row ``r`` (each class, then the top label),
        ``fv[0, j]`` its confidence, ``fv[1, j]`` its NLL factor, ``ylab[j]`` its class (``-1``: not scored)."""
        scale, last = float(s_bins), s_bins - 1
        bad_p = 0
        bad_y = 0
        bad_sum = 0
        first, stride = np.uint64(i0), np.uint64(n)  # unsigned: no negative-index wraparound, so loads stay contiguous
        for j in range(nb):
            v = t1[j]
            ok, ign = _index_label(v, c, ignore, use_ignore)
            y = np.int64(v if ok else 0)
            conf = -1.0
            pred = 0
            top = 0
            qy = 0.0
            total = 0.0
            valid_all = True
            for k in range(c):
                q = np.float64(pb[first + np.uint64(j) + np.uint64(k) * stride])
                total += q
                valid = (q >= 0.0) & (q <= 1.0)  # False for NaN
                bad_p += not valid
                valid_all = valid_all & valid
                q = q if valid else 0.0
                at = k * s_bins + min(np.int64(q * scale), last)
                hit = ok & (y == k)
                qy += q * hit  # exact (one term is q, the others 0); a select here stops LLVM vectorising the loop
                ci[k, j] = 4 * at + hit
                gt = q > conf  # strict: the first arg-max wins ties
                conf = q if gt else conf
                pred = k if gt else pred
                top = at if gt else top
            live = valid_all & m1[j]
            bad_y += live & (not ok) & (not ign)
            scored = live & ok & (not ign)
            bad_sum += scored & (abs(total - 1.0) > tol)
            ci[c, j] = 4 * (top + (c - pred) * s_bins) + (ok & (pred == y))  # same sub-bin, top-label row
            fv[0, j] = conf
            fv[1, j] = max(qy, eps) if scored else 1.0
            ylab[j] = y if scored else -1
        acc[0] += bad_sum
        acc[1] += bad_p
        acc[2] += bad_y

    @_fast_jit
    def brier(pb, n, i0, nb, ylab, acc):
        """The Brier sums of the block, one vectorised loop per class: all voxels (``acc[3 + k]``) and the voxels of
        class ``k`` (``acc[3 + c + k]``)."""
        for k in range(c):
            total = 0.0
            positive = 0.0
            first = np.uint64(k * n + i0)
            for j in range(nb):
                q = np.float64(pb[first + np.uint64(j)])
                y = ylab[j]
                hit = y == k
                d = q - hit
                e = d * d if y >= 0 else 0.0
                total += e
                positive += e if hit else 0.0
            acc[3 + k] += total
            acc[3 + c + k] += positive

    @jit
    def scatter(ci, fv, ylab, pb, n, i0, nb, counts, records):
        """Loop 3: each scored voxel's ``c + 1`` rows, in voxel order."""
        one = np.uint64(1)
        for j in range(nb):
            if ylab[j] < 0:
                continue
            for k in range(c):
                at = np.uint64(ci[k, j])
                counts[at] += 1
                records[(at >> one) | one] += np.float64(pb[np.uint64(k * n + i0 + j)])
            at = np.uint64(ci[c, j])
            counts[at] += 1
            records[(at >> one) | one] += fv[0, j]

    @jit
    def kernel(
        p, t, m, use_mask, onehot, ignore, use_ignore, s_bins, sum_tol, eps, group, lo, hi, counts, records, stats
    ):
        n = p.shape[2]
        ci = np.empty((c + 1, BLOCK), np.int64)
        fv = np.empty((2, BLOCK))
        ylab = np.empty(BLOCK, np.int64)
        acc = np.zeros(3 + 2 * c)
        unmasked = np.ones(BLOCK, np.bool_)
        tol = sum_tol if sum_tol >= 0.0 else np.inf
        nll = 0.0
        for b in range(lo // n, (hi - 1) // n + 1):
            start, stop = max(lo - b * n, 0), min(hi - b * n, n)
            pb, t1, m1 = p[b].reshape(c * n), t[b, 0], m[b if use_mask else 0]
            for i0 in range(start, stop, BLOCK):
                nb = min(BLOCK, stop - i0)
                mask = m1[i0 : i0 + nb] if use_mask else unmasked[:nb]
                rows(pb, n, i0, nb, t1[i0 : i0 + nb], mask, ignore, use_ignore, s_bins, tol, eps, ci, fv, ylab, acc)
                brier(pb, n, i0, nb, ylab, acc)
                nll += _nll(fv[1], nb, group)
                scatter(ci, fv, ylab, pb, n, i0, nb, counts, records)
        stats[: 2 * c] += acc[3:]
        _finish(stats, c, nll, int(acc[0]), int(acc[1]), int(acc[2]))

    return kernel
