# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Numba kernels of the CPU MEEP regulariser (imported on first use by :mod:`.meep_cpu`, which documents them).

Why our own ``exp`` / ``log1p``: Numba's ``math.exp`` is a scalar libm call (~17 ns a value here), which a loop
cannot vectorise; the polynomial versions below are plain arithmetic and one integer-to-float bit cast, so LLVM
turns each voxel loop into SIMD code (~1 ns a value, 17x faster, as fast as ``torch.exp``). Their relative error
(tested against float64 NumPy) is below 2e-7 for ``|x| <= 20``; beyond, ``fastmath`` reassociation merges the two
parts of the Cody-Waite reduction and it grows to 3e-7 at ``|x| = 87``, where ``exp(x) < 2e-9`` sits beside terms
of order 1 and vanishes in every sum: far inside the 1e-6 the fast path must match the reference to.

Each kernel is built by a factory for one combination of regulariser kind and options (ignore_index or not, a valid
mask or not), which are then compile-time constants: the voxel loop has no branch left (selections and ``&`` /
``|``, never ``and`` / ``or``, which branch), so it vectorises. ``fastmath`` allows reassociation and contraction
only, never "no NaN / no inf", so the non-finite checks stay.

What keeps the loops vectorised (each checked in the generated assembly): ``error_model="numpy"`` (no
ZeroDivisionError branch at a division), float32 throughout (``np.floor``, not ``math.floor``, whose int64 result
turns what follows into float64), one-dimensional views per image indexed by an unsigned voxel index (a signed
index carries Numba's negative-index wraparound, which turns contiguous loads and stores into gathers and scatters),
and sums and counts kept in float32 / int32 over blocks of voxels, added to float64 / int64 totals per block.
"""

from __future__ import annotations

import functools
import math

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._numba import jit

__all__ = ["sigmoid1_kernel", "sigmoid_kernel", "softmax2_kernel", "softmax_kernel"]

_FM = {"reassoc", "contract", "arcp", "nsz"}
_F32 = np.float32
_LOG2 = math.log(2.0)
# voxels summed in float32 (and counted in int32) before the part's float64 total: wide SIMD lanes in the loop, and
# each lane adds at most _BLOCK / 8 values, so the float32 partial sums keep a relative error near 1e-7
_BLOCK = 1024


@intrinsic
def _f32_from_bits(typingctx, bits):
    """Reinterpret an int32 as a float32 (a bit cast, not a conversion)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


@intrinsic
def _bits_from_f32(typingctx, value):
    """Reinterpret a float32 as an int32."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))

    return types.int32(types.float32), codegen


@nb.njit(inline="always", fastmath=_FM)
def _exp(x):
    """``exp(x)`` for float32 ``x``: ``2^n e^r`` with ``|r| <= ln2 / 2`` and a degree-7 Taylor polynomial."""
    x = min(max(x, _F32(-87.0)), _F32(88.0))  # exp(-87) is still a normal float32; below it counts as 0 here
    # np.floor keeps float32 (math.floor returns an int64, which would turn the rest into float64 arithmetic,
    # half as many lanes per SIMD instruction)
    n = np.floor(x * _F32(1.4426950408889634) + _F32(0.5))
    # Cody-Waite: ln 2 split in a part exact in float32 and the rest, so r keeps its precision
    r = x - n * _F32(0.693359375) - n * _F32(-2.12194440e-4)
    p = _F32(1.0 / 5040.0)
    p = p * r + _F32(1.0 / 720.0)
    p = p * r + _F32(1.0 / 120.0)
    p = p * r + _F32(1.0 / 24.0)
    p = p * r + _F32(1.0 / 6.0)
    p = p * r + _F32(0.5)
    p = p * r + _F32(1.0)
    p = p * r + _F32(1.0)
    return p * _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


@nb.njit(inline="always", fastmath=_FM)
def _log_ratio(t):
    """``log((1 + t) / (1 - t)) = 2 atanh(t)`` for ``0 <= t <= 1/3`` (series to t^13: relative error < 2e-8)."""
    t2 = t * t
    q = _F32(1.0 / 13.0)
    q = q * t2 + _F32(1.0 / 11.0)
    q = q * t2 + _F32(1.0 / 9.0)
    q = q * t2 + _F32(1.0 / 7.0)
    q = q * t2 + _F32(1.0 / 5.0)
    q = q * t2 + _F32(1.0 / 3.0)
    q = q * t2 + _F32(1.0)
    return _F32(2.0) * t * q


@nb.njit(inline="always", fastmath=_FM)
def _log1p_unit(e):
    """``log(1 + e)`` for ``0 <= e <= 1``, precise for tiny ``e`` too (``1 + e`` is never formed)."""
    return _log_ratio(e / (_F32(2.0) + e))


@nb.njit(inline="always", fastmath=_FM)
def _log_ge1(x):
    """``log(x)`` for a float32 ``x >= 1``: exponent from the bits, mantissa ``m`` in [1, 2) by ``2 atanh``."""
    bits = _bits_from_f32(x)
    k = (bits >> np.int32(23)) - np.int32(127)
    m = _f32_from_bits((bits & np.int32(0x7FFFFF)) | np.int32(0x3F800000))
    return _F32(k) * _F32(_LOG2) + _log_ratio((m - _F32(1.0)) / (m + _F32(1.0)))


@nb.njit(inline="always", fastmath=_FM)
def _finite(x):
    # abs(NaN) < inf is False, abs(inf) < inf is False: one compare, vectorisable
    return abs(x) < _F32(np.inf)


def _integral(x):  # pragma: no cover - replaced by the overload below inside compiled code
    raise NotImplementedError


def _positive_bad(label):  # pragma: no cover - replaced by its overload inside compiled code
    raise NotImplementedError


@overload(_integral, inline="always")
def _integral_impl(x):
    """Whether a label value is a whole number: always for integer dtypes, ``floor(x) == x`` for floats (NaN: no)."""
    if isinstance(x, (types.Integer, types.Boolean)):
        return lambda x: True
    return lambda x: np.floor(x) == x


# -------------------------------------------------------------------------------------------- two-class softmax
# With two classes softmax is the sigmoid of d = z1 - z0: p1 = sigmoid(d), the prediction is class 1 iff d > 0
# (argmax takes the first maximum on ties), and both regularisers depend on d alone. With a = |d| and e = exp(-a):
#   KL(u || p) = a / 2 + log1p(e) - log 2,   d/dd = p1 - 1/2
#   H(p)       = log1p(e) + a e / (1 + e),   d/dd = -p0 p1 d
# and d/dz1 = -d/dz0 = d/dd. A sigmoid channel is the same with d = z.


@nb.njit(inline="always", fastmath=_FM)
def _two_class(d, kind):
    """``(value, d value / dd)`` of the regulariser at ``d``; kind 1 KL, else the entropy."""
    a = abs(d)
    e = _exp(-a)
    lg = _log1p_unit(e)
    inv = _F32(1.0) / (_F32(1.0) + e)
    p_min = e * inv
    if kind == 1:
        g = _F32(0.5) - p_min  # |p1 - 1/2|, 0 at d = 0; a select, not copysign (a libm call that blocks SIMD)
        return _F32(0.5) * a + lg - _F32(_LOG2), g if d > _F32(0.0) else -g
    return lg + a * p_min, -(p_min * inv) * d


@functools.cache
def softmax2_kernel(kind: int, has_ignore: bool, has_valid: bool, with_grad: bool):
    """The pass over ``(B, 2, S)`` float32 logits and ``(B, S)`` labels of any real dtype.

    ``kind``: 0 entropy / 1 KL on the misclassified voxels, 2 entropy on every scored voxel. ``kernel(z, labels,
    valid, ignore, lo, hi, stats, grad)`` writes ``[total, count, non-finite logits, bad labels]`` of voxels
    ``lo:hi`` into ``stats`` and, ``with_grad``, ``d total / d z`` into ``grad`` there (0 outside the selected set):
    the gradient comes out of the same exponentials as the value, so the backward is one multiplication.
    ``valid`` ``(B, S)`` uint8 is read only when ``has_valid``.
    """

    @jit(fastmath=_FM)
    def kernel(z, labels, valid, ignore, lo, hi, stats, grad):
        n_s = z.shape[2]
        total, count, bad_z, bad_y = 0.0, 0, 0, 0
        for b in range(lo // n_s, (hi - 1) // n_s + 1):  # one contiguous run of voxels per image: it vectorises
            s0, s1 = max(lo - b * n_s, 0), min(hi - b * n_s, n_s)
            z0, z1, lab = z[b, 0], z[b, 1], labels[b]
            ok_b = valid[b] if has_valid else valid[0]
            g0, g1 = (grad[b, 0], grad[b, 1]) if with_grad else (grad[0, 0], grad[0, 0])
            for c0 in range(s0, s1, _BLOCK):
                part, n_sel, n_bad_z, n_bad_y = _F32(0.0), np.int32(0), np.int32(0), np.int32(0)
                for i in range(min(_BLOCK, s1 - c0)):
                    s = np.uint64(c0 + i)  # unsigned: no negative-index wraparound, so loads stay contiguous
                    a0, a1, label = z0[s], z1[s], lab[s]
                    ok = _finite(a0) & _finite(a1)
                    d = a1 - a0 if ok else _F32(0.0)
                    ignored = (label == ignore) if has_ignore else False
                    in_range = (label >= 0) & (label < 2) & _integral(label)
                    scored = in_range & (not ignored)
                    if has_valid:
                        scored = scored & (ok_b[s] != 0)
                    selected = scored if kind == 2 else scored & ((d > _F32(0.0)) != (label == 1))
                    value, g = _two_class(d, kind)
                    part += value if selected else _F32(0.0)
                    n_sel += np.int32(selected)
                    n_bad_z += np.int32(not ok)
                    n_bad_y += np.int32((not in_range) & (not ignored))
                    if with_grad:
                        g = g if selected else _F32(0.0)
                        g1[s] = g
                        g0[s] = -g
                total += part
                count, bad_z, bad_y = count + n_sel, bad_z + n_bad_z, bad_y + n_bad_y
        stats[0], stats[1], stats[2], stats[3] = total, count, bad_z, bad_y

    return kernel


# ---------------------------------------------------------------------------------------------- C-class softmax
# With m = max_k z_k, d_k = m - z_k >= 0, e_k = exp(-d_k), R = sum_{k != argmax} e_k, T = 1 + R, L = log1p(R)
# (log T from R, which float32 keeps exactly even when T rounds to 1), p_k = e_k / T:
#   KL(u || p) = L + mean_k d_k - log C,      d/dz_k = p_k - 1/C
#   H(p)       = L + sum_k e_k d_k / T,       d/dz_k = -p_k (H - L - d_k)
# No difference of numbers of the size of the logits (H's terms are all non-negative; KL subtracts only log C):
# lse - sum p z would lose the entropy of a confident voxel, ~1e-4 next to logits ~10, to float32 rounding.


@nb.njit(inline="always", fastmath=_FM)
def _voxel_stats(z, b, s, n_ch):
    """``(L, mean d, H, m, 1 / T, argmax, all finite)`` of the logits of one voxel (notation above)."""
    m = z[b, 0, s]
    arg = 0
    ok = _finite(m)
    for k in range(1, n_ch):
        v = z[b, k, s]
        ok = ok & _finite(v)
        arg = k if v > m else arg
        m = v if v > m else m
    m = m if ok else _F32(0.0)
    rest = _F32(0.0)
    gaps = _F32(0.0)
    weighted = _F32(0.0)
    for k in range(n_ch):
        d = m - z[b, k, s] if ok else _F32(0.0)
        e = _exp(-d)
        rest += e if k != arg else _F32(0.0)
        gaps += d
        weighted += e * d
    inv_t = _F32(1.0) / (_F32(1.0) + rest)
    lg = _log1p_unit(rest) if rest <= _F32(1.0) else _log_ge1(_F32(1.0) + rest)
    return lg, gaps / _F32(n_ch), lg + weighted * inv_t, m, inv_t, arg, ok


@functools.cache
def softmax_kernel(kind: int, has_ignore: bool, has_valid: bool, with_grad: bool):
    """As :func:`softmax2_kernel` for ``(B, C, S)`` logits with any ``C >= 2``. Not vectorised (the loops over the
    channels, of a length known only at run time, keep LLVM from vectorising the loop over the voxels)."""

    @jit(fastmath=_FM)
    def kernel(z, labels, valid, ignore, lo, hi, stats, grad):
        n_ch, n_s = z.shape[1], z.shape[2]
        log_c, inv_c = _F32(math.log(n_ch)), _F32(1.0 / n_ch)
        total, count, bad_z, bad_y = 0.0, 0, 0, 0
        for b in range(lo // n_s, (hi - 1) // n_s + 1):
            s0, s1 = max(lo - b * n_s, 0), min(hi - b * n_s, n_s)
            lab = labels[b]
            ok_b = valid[b] if has_valid else valid[0]
            for c0 in range(s0, s1, _BLOCK):
                part, n_sel, n_bad_z, n_bad_y = _F32(0.0), np.int32(0), np.int32(0), np.int32(0)
                for i in range(min(_BLOCK, s1 - c0)):
                    s = np.uint64(c0 + i)
                    lg, gap, h, m, inv_t, arg, ok = _voxel_stats(z, b, s, n_ch)
                    label = lab[s]
                    ignored = (label == ignore) if has_ignore else False
                    in_range = (label >= 0) & (label < n_ch) & _integral(label)
                    scored = in_range & (not ignored)
                    if has_valid:
                        scored = scored & (ok_b[s] != 0)
                    selected = scored if kind == 2 else scored & (arg != label)
                    value = lg + gap - log_c if kind == 1 else h
                    part += value if selected else _F32(0.0)
                    n_sel += np.int32(selected)
                    n_bad_z += np.int32(not ok)
                    n_bad_y += np.int32((not in_range) & (not ignored))
                    if with_grad:
                        for k in range(n_ch):
                            d = m - z[b, k, s] if ok else _F32(0.0)
                            p = _exp(-d) * inv_t
                            g = p - inv_c if kind == 1 else -p * (h - lg - d)
                            grad[b, k, s] = g if selected else _F32(0.0)
                total += part
                count, bad_z, bad_y = count + n_sel, bad_z + n_bad_z, bad_y + n_bad_y
        stats[0], stats[1], stats[2], stats[3] = total, count, bad_z, bad_y

    return kernel


# ---------------------------------------------------------------------------------------------------- sigmoid
# Per element: the channel's Bernoulli distribution (p = sigmoid(z), 1 - p) is the two-class softmax of d = z; the
# element is misclassified when (z > 0) != positive.


@functools.cache
def sigmoid_kernel(kind: int, has_valid: bool, per_channel: bool, with_grad: bool):
    """The pass over ``(B, C, S)`` float32 logits, one Bernoulli distribution per channel.

    ``kernel(z, positive, valid, lo, hi, stats, grad)``: ``positive`` ``(B, C, S)`` (``per_channel``) or
    ``(B, 1, S)`` uint8, 1 where the element's label is positive; ``valid`` ``(B, S)`` uint8 read when ``has_valid``;
    otherwise as :func:`softmax2_kernel` (the bad-label count is always 0: the caller checks sigmoid targets).
    """

    @jit(fastmath=_FM)
    def kernel(z, positive, valid, lo, hi, stats, grad):
        n_ch, n_s = z.shape[1], z.shape[2]
        total, count, bad_z = 0.0, 0, 0
        for b in range(lo // n_s, (hi - 1) // n_s + 1):
            s0, s1 = max(lo - b * n_s, 0), min(hi - b * n_s, n_s)
            ok_b = valid[b] if has_valid else valid[0]
            for c in range(n_ch):
                zc, pc = z[b, c], positive[b, c if per_channel else 0]
                gc = grad[b, c] if with_grad else grad[0, 0]
                for c0 in range(s0, s1, _BLOCK):
                    part, n_sel, n_bad_z = _F32(0.0), np.int32(0), np.int32(0)
                    for i in range(min(_BLOCK, s1 - c0)):
                        s = np.uint64(c0 + i)
                        v = zc[s]
                        ok = _finite(v)
                        v = v if ok else _F32(0.0)
                        scored = (ok_b[s] != 0) if has_valid else True
                        selected = scored if kind == 2 else scored & ((v > _F32(0.0)) != (pc[s] != 0))
                        value, g = _two_class(v, kind)
                        part += value if selected else _F32(0.0)
                        n_sel += np.int32(selected)
                        n_bad_z += np.int32(not ok)
                        if with_grad:
                            gc[s] = g if selected else _F32(0.0)
                    total += part
                    count, bad_z = count + n_sel, bad_z + n_bad_z
        stats[0], stats[1], stats[2], stats[3] = total, count, bad_z, 0

    return kernel


@overload(_positive_bad, inline="always")
def _positive_bad_impl(label):
    """``(positive, bad)`` of a one-channel sigmoid label: a float is a (soft) probability in [0, 1], positive above
    1/2 (NaN is bad); an integer is 0 or 1. The reference's rule (``losses.targets.positive_labels`` and its checks)."""
    if isinstance(label, types.Float):
        return lambda label: (label > 0.5, not ((label >= 0.0) & (label <= 1.0)))
    return lambda label: (label != 0, (label < 0) | (label > 1))


@functools.cache
def sigmoid1_kernel(kind: int, has_ignore: bool, with_grad: bool):
    """The pass over ``(B, 1, S)`` float32 logits of one sigmoid channel and their ``(B, S)`` labels of any real
    dtype, read as they are (no boolean copy): the labels are checked in the same pass (``stats[3]`` counts those
    outside [0, 1], NaN included, ``ignore`` excepted); otherwise as :func:`sigmoid_kernel`."""

    @jit(fastmath=_FM)
    def kernel(z, labels, ignore, lo, hi, stats, grad):
        n_s = z.shape[2]
        total, count, bad_z, bad_y = 0.0, 0, 0, 0
        for b in range(lo // n_s, (hi - 1) // n_s + 1):
            s0, s1 = max(lo - b * n_s, 0), min(hi - b * n_s, n_s)
            z0, lab = z[b, 0], labels[b]
            g0 = grad[b, 0] if with_grad else grad[0, 0]
            for c0 in range(s0, s1, _BLOCK):
                part, n_sel, n_bad_z, n_bad_y = _F32(0.0), np.int32(0), np.int32(0), np.int32(0)
                for i in range(min(_BLOCK, s1 - c0)):
                    s = np.uint64(c0 + i)
                    v, label = z0[s], lab[s]
                    ok = _finite(v)
                    v = v if ok else _F32(0.0)
                    ignored = (label == ignore) if has_ignore else False
                    pos, bad = _positive_bad(label)
                    scored = not ignored
                    selected = scored if kind == 2 else scored & ((v > _F32(0.0)) != pos)
                    value, g = _two_class(v, kind)
                    part += value if selected else _F32(0.0)
                    n_sel += np.int32(selected)
                    n_bad_z += np.int32(not ok)
                    n_bad_y += np.int32(bad & scored)
                    if with_grad:
                        g0[s] = g if selected else _F32(0.0)
                total += part
                count, bad_z, bad_y = count + n_sel, bad_z + n_bad_z, bad_y + n_bad_y
        stats[0], stats[1], stats[2], stats[3] = total, count, bad_z, bad_y

    return kernel
