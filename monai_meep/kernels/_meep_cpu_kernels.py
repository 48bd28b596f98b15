# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Numba kernels of the CPU MEEP regulariser (imported on first use by :mod:`.meep_cpu`, which documents them).

Why our own ``exp`` / ``log1p``: Numba's ``math.exp`` is a scalar libm call (~17 ns a value here), which a loop
cannot vectorise; the polynomial versions below are plain arithmetic and one integer-to-float bit cast, so LLVM
turns each voxel loop into SIMD code (~1 ns a value, 17x faster, as fast as ``torch.exp``). Their relative error is
below 1e-7 in float32 (tested against float64 NumPy), far inside the 1e-6 the fast path must match the reference to.

Every loop is branch-free (selections, not ``if``), so it vectorises; ``fastmath`` allows reassociation and
contraction only, never "no NaN / no inf", so the non-finite checks stay.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic

__all__ = [
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax2_backward",
    "softmax2_forward",
    "softmax_backward",
    "softmax_forward",
]

_FM = {"reassoc", "contract", "arcp", "nsz"}
_F32 = np.float32
_LOG2 = math.log(2.0)


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
    n = math.floor(x * _F32(1.4426950408889634) + _F32(0.5))
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


@nb.njit(inline="always", fastmath=_FM)
def _label_state(label, n_ch, ignore, has_ignore):
    """``(scored, bad)`` for one label value: ignored voxels are neither scored nor checked."""
    ignored = has_ignore and label == ignore
    bad = (not ignored) and ((label < 0) or (label >= n_ch) or (label != math.floor(label)))
    return (not ignored) and (not bad), bad


# -------------------------------------------------------------------------------------------- two-class softmax
# With two classes softmax is the sigmoid of d = z1 - z0: p1 = sigmoid(d), the prediction is class 1 iff d > 0
# (argmax takes the first maximum on ties), and both regularisers depend on d alone. With a = |d| and e = exp(-a):
#   KL(u || p) = a / 2 + log1p(e) - log 2,   d/dd = p1 - 1/2
#   H(p)       = log1p(e) + a e / (1 + e),   d/dd = -p0 p1 d
# and d/dz1 = -d/dz0 = d/dd.


@nb.njit(inline="always", fastmath=_FM)
def _two_class(d, kind):
    """``(value, d value / dd)`` of the regulariser at ``d = z1 - z0``; kind 0 entropy, 1 KL (2: entropy too)."""
    a = abs(d)
    e = _exp(-a)
    lg = _log1p_unit(e)
    inv = _F32(1.0) / (_F32(1.0) + e)
    p_min = e * inv
    kl_value = _F32(0.5) * a + lg - _F32(_LOG2)
    kl_grad = _F32(math.copysign(_F32(0.5) - p_min, d))  # 0 at d = 0, where p_min = 1/2
    h_value = lg + a * p_min
    h_grad = -(p_min * inv) * d
    return (kl_value, kl_grad) if kind == 1 else (h_value, h_grad)


@nb.njit(nogil=True, fastmath=_FM, cache=True)
def softmax2_forward(z, labels, valid, has_valid, ignore, has_ignore, kind, lo, hi, stats):
    """Accumulate ``[total, count, non-finite logits, bad labels]`` over voxels ``lo:hi`` of ``(B, 2, S)`` logits.

    ``labels`` ``(B, S)`` class indices (any real dtype); ``valid`` ``(B, S)`` uint8 (read when ``has_valid``);
    ``kind`` 0 entropy / 1 KL on the misclassified voxels, 2 entropy on every scored voxel.
    """
    n_s = z.shape[2]
    total = 0.0
    count = 0
    bad_z = 0
    bad_y = 0
    for i in range(lo, hi):
        b = i // n_s
        s = i - b * n_s
        z0 = z[b, 0, s]
        z1 = z[b, 1, s]
        label = labels[b, s]
        scored, bad = _label_state(label, 2, ignore, has_ignore)
        if has_valid:
            scored = scored and valid[b, s] != 0
        d = z1 - z0
        ok = _finite(z0) and _finite(z1)
        d = d if ok else _F32(0.0)
        pred = _F32(1.0) if d > _F32(0.0) else _F32(0.0)
        selected = scored and (kind == 2 or pred != label)
        value, _ = _two_class(d, kind)
        total += value if selected else _F32(0.0)
        count += 1 if selected else 0
        bad_z += 0 if ok else 1
        bad_y += 1 if bad else 0
    stats[0] = total
    stats[1] = count
    stats[2] = bad_z
    stats[3] = bad_y


@nb.njit(nogil=True, fastmath=_FM, cache=True)
def softmax2_backward(z, labels, valid, has_valid, ignore, has_ignore, kind, scale, lo, hi, grad):
    """``grad[b, :, s] = scale * d total / d z[b, :, s]`` for voxels ``lo:hi`` (0 outside the selected set)."""
    n_s = z.shape[2]
    for i in range(lo, hi):
        b = i // n_s
        s = i - b * n_s
        z0 = z[b, 0, s]
        z1 = z[b, 1, s]
        label = labels[b, s]
        scored, _ = _label_state(label, 2, ignore, has_ignore)
        if has_valid:
            scored = scored and valid[b, s] != 0
        d = z1 - z0
        pred = _F32(1.0) if d > _F32(0.0) else _F32(0.0)
        selected = scored and (kind == 2 or pred != label)
        _, g = _two_class(d, kind)
        g = scale * g if selected else _F32(0.0)
        grad[b, 1, s] = g
        grad[b, 0, s] = -g


# ---------------------------------------------------------------------------------------------- C-class softmax
# With m = max_k z_k, lse = m + log sum_k exp(z_k - m), p_k = exp(z_k - lse):
#   KL(u || p) = lse - mean_k z_k - log C,   d/dz_k = p_k - 1/C
#   H(p)       = lse - sum_k p_k z_k,        d/dz_k = -p_k (z_k - lse + H)


@nb.njit(inline="always", fastmath=_FM)
def _voxel_stats(z, b, s, n_ch):
    """``(lse, mean z, sum p z, argmax, all finite)`` of the logits of one voxel."""
    m = z[b, 0, s]
    arg = 0
    ok = _finite(m)
    zsum = m
    for k in range(1, n_ch):
        v = z[b, k, s]
        ok = ok and _finite(v)
        zsum += v
        arg = k if v > m else arg
        m = v if v > m else m
    m = m if ok else _F32(0.0)
    total = _F32(0.0)
    weighted = _F32(0.0)
    for k in range(n_ch):
        v = z[b, k, s] if ok else _F32(0.0)
        e = _exp(v - m)
        total += e
        weighted += e * v
    lse = m + _log_ge1(total)
    return lse, zsum / _F32(n_ch), weighted / total, arg, ok


@nb.njit(nogil=True, fastmath=_FM, cache=True)
def softmax_forward(z, labels, valid, has_valid, ignore, has_ignore, kind, lo, hi, stats):
    """As :func:`softmax2_forward` for ``(B, C, S)`` logits with any ``C >= 2``."""
    n_ch, n_s = z.shape[1], z.shape[2]
    log_c = math.log(n_ch)
    total = 0.0
    count = 0
    bad_z = 0
    bad_y = 0
    for i in range(lo, hi):
        b = i // n_s
        s = i - b * n_s
        label = labels[b, s]
        scored, bad = _label_state(label, n_ch, ignore, has_ignore)
        if has_valid:
            scored = scored and valid[b, s] != 0
        lse, zmean, pz, arg, ok = _voxel_stats(z, b, s, n_ch)
        selected = scored and (kind == 2 or arg != label)
        value = lse - zmean - _F32(log_c) if kind == 1 else lse - pz
        total += value if selected else _F32(0.0)
        count += 1 if selected else 0
        bad_z += 0 if ok else 1
        bad_y += 1 if bad else 0
    stats[0] = total
    stats[1] = count
    stats[2] = bad_z
    stats[3] = bad_y


@nb.njit(nogil=True, fastmath=_FM, cache=True)
def softmax_backward(z, labels, valid, has_valid, ignore, has_ignore, kind, scale, lo, hi, grad):
    """As :func:`softmax2_backward` for ``(B, C, S)`` logits with any ``C >= 2``."""
    n_ch, n_s = z.shape[1], z.shape[2]
    inv_c = _F32(1.0 / n_ch)
    for i in range(lo, hi):
        b = i // n_s
        s = i - b * n_s
        label = labels[b, s]
        scored, _ = _label_state(label, n_ch, ignore, has_ignore)
        if has_valid:
            scored = scored and valid[b, s] != 0
        lse, _, pz, arg, _ = _voxel_stats(z, b, s, n_ch)
        selected = scored and (kind == 2 or arg != label)
        h = lse - pz
        for k in range(n_ch):
            v = z[b, k, s]
            p = _exp(v - lse)
            g = p - inv_c if kind == 1 else -p * (v - lse + h)
            grad[b, k, s] = scale * g if selected else _F32(0.0)


# ---------------------------------------------------------------------------------------------------- sigmoid
# Per element: the channel's Bernoulli distribution (p = sigmoid(z), 1 - p) is the two-class softmax of d = z, so
# the values and gradients are those of _two_class; the element is misclassified when (z > 0) != positive.


@nb.njit(nogil=True, fastmath=_FM, cache=True)
def sigmoid_forward(z, positive, valid, has_valid, kind, lo, hi, stats):
    """Accumulate ``[total, count, non-finite logits, 0]`` over voxels ``lo:hi`` of ``(B, C, S)`` logits.

    ``positive`` ``(B, C, S)`` or ``(B, 1, S)`` uint8 (1 where the element's label is positive); ``valid`` ``(B, S)``
    uint8 (read when ``has_valid``); ``kind`` as in :func:`softmax2_forward`.
    """
    n_ch, n_s = z.shape[1], z.shape[2]
    per_channel = positive.shape[1] == n_ch
    total = 0.0
    count = 0
    bad_z = 0
    for i in range(lo, hi):
        b = i // n_s
        s = i - b * n_s
        scored = valid[b, s] != 0 if has_valid else True
        for c in range(n_ch):
            v = z[b, c, s]
            ok = _finite(v)
            v = v if ok else _F32(0.0)
            pos = positive[b, c if per_channel else 0, s] != 0
            selected = scored and (kind == 2 or (v > _F32(0.0)) != pos)
            value, _ = _two_class(v, kind)
            total += value if selected else _F32(0.0)
            count += 1 if selected else 0
            bad_z += 0 if ok else 1
    stats[0] = total
    stats[1] = count
    stats[2] = bad_z
    stats[3] = 0


@nb.njit(nogil=True, fastmath=_FM, cache=True)
def sigmoid_backward(z, positive, valid, has_valid, kind, scale, lo, hi, grad):
    """``grad[b, c, s] = scale * d total / d z[b, c, s]`` for voxels ``lo:hi`` (0 outside the selected set)."""
    n_ch, n_s = z.shape[1], z.shape[2]
    per_channel = positive.shape[1] == n_ch
    for i in range(lo, hi):
        b = i // n_s
        s = i - b * n_s
        scored = valid[b, s] != 0 if has_valid else True
        for c in range(n_ch):
            v = z[b, c, s]
            pos = positive[b, c if per_channel else 0, s] != 0
            selected = scored and (kind == 2 or (v > _F32(0.0)) != pos)
            _, g = _two_class(v, kind)
            grad[b, c, s] = scale * g if selected else _F32(0.0)
