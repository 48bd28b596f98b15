# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""What the NumPy (CPU) and torch (CUDA) update paths of :class:`~monai_meep.metrics.CalibrationHistogram` share.

One chunk validator and one sum check, written once over the few array operations whose spelling differs between
NumPy and torch (:class:`ArrayOps`), so the two paths cannot drift apart in what they accept or how they say no; the
``bincount`` split that turns index codes into counts / positives / sums (``np.bincount`` and ``torch.bincount`` take
the same arguments); the chunk-sized workspace both paths write into (NumPy through ``Tensor.numpy()`` views); and
the call they both implement (``Accumulator``, taking the update's :class:`ChunkRules`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping
from typing import Any, NamedTuple

import torch

__all__ = [
    "FLAG_BAD_P",
    "FLAG_BAD_SUM",
    "FLAG_BAD_Y",
    "FLAG_NLL",
    "Accumulator",
    "ArrayOps",
    "ChunkRules",
    "Workspace",
    "add_coded",
    "check_sum",
    "validate_chunk",
]

# the Numba path's per-part statistics vector after the Brier sums: [nll, scored voxels whose channel sum is off by
# more than sum_tol, bad probabilities, bad labels] (written by the kernels of _histogram_numba_kernels and
# _histogram_numba_blocks, read by their driver in _histogram_numba); counts, not a maximum, because a count is a sum
# the blocked kernels vectorise
FLAG_NLL, FLAG_BAD_SUM, FLAG_BAD_P, FLAG_BAD_Y = range(4)

_SUM_MSG = (
    "probs do not sum to 1 over channels (max deviation {err:.3g} > sum_tol={tol}); pass probabilities (softmax), "
    "not logits, or set check_sum=False for per-class calibrated outputs."
)


class ChunkRules(NamedTuple):
    """What one update accepts and scores; the same for every chunk of it.

    Attributes:
        onehot: whether the target is one-hot ``(C, n)`` rather than class indices ``(1, n)``.
        ignore_index: optional label (index targets only) whose voxels are skipped, like a mask.
        sum_tol: tolerance of the check that multi-channel probabilities sum to 1; ``None`` skips it.
    """

    onehot: bool
    ignore_index: int | None
    sum_tol: float | None


class ArrayOps(NamedTuple):
    """The operations :func:`validate_chunk` and :func:`check_sum` need whose NumPy and torch spellings differ.

    Everything else they use (comparisons, ``&``, ``.any()``, ``.sum(0)``, ``.argmax(0)``, boolean indexing, ``.shape``)
    is spelled the same by ``np.ndarray`` and ``torch.Tensor``.
    """

    minmax: Callable[[Any], tuple[Any, Any]]  # (min, max); torch.aminmax does it in one pass
    isfinite: Callable[[Any], Any]
    round: Callable[[Any], Any]
    is_floating: Callable[[Any], bool]
    to_int64: Callable[[Any], Any]


def validate_chunk(p: Any, t: Any, m: Any, rules: ChunkRules, c: int, ops: ArrayOps):
    """Check one chunk and drop the voxels that are not scored.

    Args:
        p: ``(C', n)`` probabilities (``C' == 1``: sigmoid foreground), NumPy array or torch tensor.
        t: ``(1, n)`` class indices or ``(C, n)`` one-hot, same library as ``p``.
        m: optional boolean ``(n,)`` mask.
        rules: whether ``t`` is one-hot, and the label to drop (``rules.sum_tol`` is :func:`check_sum`'s).
        c: number of classes.
        ops: the library's :class:`ArrayOps`.

    Returns:
        ``(p (C', n'), labels (n',) int64)`` over the voxels that are scored.

    Raises:
        ValueError: probabilities outside [0, 1] or not finite; a one-hot target that is not one-hot; labels that are
            not integers in ``[0, c)``.
    """
    if 0 in p.shape:
        return p, ops.to_int64(t[0])
    lo, hi = ops.minmax(p)  # NaN propagates through min / max, so this also catches NaN and inf
    if not (bool(lo >= 0) and bool(hi <= 1)):
        if not bool(ops.isfinite(p).all()):
            raise ValueError("probs contain NaN or inf.")
        raise ValueError(f"probs must lie in [0, 1], got values in [{float(lo):.6g}, {float(hi):.6g}].")
    onehot, ignore_index = rules.onehot, rules.ignore_index
    if onehot:
        if m is not None:
            p, t = p[:, m], t[:, m]
        if bool(((t != 0) & (t != 1)).any()) or bool((t.sum(0) != 1).any()):
            raise ValueError("one-hot target must hold 0 / 1 with exactly one 1 per voxel (where accumulated).")
        return p, t.argmax(0)
    keep = m
    if ignore_index is not None:
        keep = (t[0] != ignore_index) if keep is None else keep & (t[0] != ignore_index)
    if keep is not None:
        p, t = p[:, keep], t[:, keep]
    tf = t[0]
    if ops.is_floating(tf):
        if not bool(ops.isfinite(tf).all()):
            raise ValueError("index target must hold integer class labels, got NaN or inf.")
        if not bool((tf == ops.round(tf)).all()):
            raise ValueError("index target must hold integer class labels, got non-integer values.")
    y = ops.to_int64(tf)
    if y.shape[0]:
        lo_y, hi_y = (int(v) for v in ops.minmax(y))
        if lo_y < 0 or hi_y >= c:
            raise ValueError(f"labels must lie in [0, {c - 1}] (num_classes={c}), got values in [{lo_y}, {hi_y}].")
    return p, y


def check_sum(sums: Any, tol: float, ops: ArrayOps) -> None:
    """Raise ``ValueError`` if the per-voxel channel sums ``sums`` deviate from 1 by more than ``tol``."""
    lo, hi = ops.minmax(sums)
    err = max(1.0 - float(lo), float(hi) - 1.0)
    if err > tol:
        raise ValueError(_SUM_MSG.format(err=err, tol=tol))


def add_coded(
    acc: MutableMapping[str, Any], keys: tuple[str, str, str], bincount: Callable, code: Any, weights: Any, shape: tuple
) -> None:
    """Add the statistics behind index codes ``2 * bin + hit`` to ``acc``.

    Two ``bincount`` calls over all bins at once: the counts split by ``hit`` give the voxel counts (both halves)
    and the hits (odd half); the ``weights`` sums of both halves give the probability sums.

    Args:
        acc: the accumulator, NumPy arrays or torch tensors (added to in place).
        keys: names of the ``(count, hit, sum)`` entries of ``acc``, each of shape ``shape``.
        bincount: ``np.bincount`` or ``torch.bincount`` (same signature), matching ``code``.
        code: flat int64 codes ``2 * (flat bin index) + hit``.
        weights: flat float64 weights (probabilities), aligned with ``code``.
        shape: shape of the bins (``(C, S)`` marginal, ``(S,)`` top label).
    """
    size = 2 * math.prod(shape)
    b = bincount(code, minlength=size).reshape(*shape, 2)
    acc[keys[0]] += b.sum(-1)
    acc[keys[1]] += b[..., 1]
    acc[keys[2]] += bincount(code, weights, minlength=size).reshape(*shape, 2).sum(-1)


class Workspace:
    """Chunk-sized scratch buffers, allocated once per update and reused by every chunk (fresh chunk-sized
    allocations are page-faulted in each time, which costs more than the arithmetic on them).

    Args:
        c: number of classes.
        n: voxels per chunk (at most).
        s_bins: number of sub-bins.
        device: where the buffers live (the NumPy path uses ``.numpy()`` views of CPU buffers).
    """

    def __init__(self, c: int, n: int, s_bins: int, device: torch.device) -> None:
        self.c, self.s_bins = c, s_bins
        f64, i64 = dict(dtype=torch.float64, device=device), dict(dtype=torch.int64, device=device)
        # flat, so that the first c * n' elements are a contiguous (c, n') view for a shorter (masked, last) chunk
        self.p64, self.tmp, self.code = torch.empty(c * n, **f64), torch.empty(c * n, **f64), torch.empty(c * n, **i64)
        self.conf, self.tcode, self.pred = torch.empty(n, **f64), torch.empty(n, **i64), torch.empty(n, **i64)
        self.flag = torch.empty(n, dtype=torch.bool, device=device)
        self.pred2, self.iscr, self.arange = torch.empty(n, **i64), torch.empty(n, **i64), torch.arange(n, **i64)
        self.labels = torch.arange(c, **i64)  # class indices as 0-dim tensors, for torch.where
        self.pad = 64  # room for the NLL group padding after p_y
        self.p_y = torch.empty(n + self.pad, **f64)
        # stride-0 constant sources: no memory behind them
        self.ones = torch.ones(1, 1, dtype=torch.int64, device=device).expand(1, n)
        self.minus_ones = torch.full((1, 1), -1.0, **f64).expand(1, n)
        self.offsets = torch.arange(0, 2 * c * s_bins, 2 * s_bins, **i64).unsqueeze(1)

    @staticmethod
    def group(eps: float) -> int:
        """Largest power of two ``g <= 64`` with ``eps ** g`` well inside float64's normal range (``> 2^-960``)."""
        g = 64
        while g > 1 and g * -math.log2(eps) > 960:
            g //= 2
        return g


# The call both update paths implement (``accumulate_numpy``: CPU, ``accumulate_torch``: CUDA):
# ``accumulate(acc, ws, p, t, m, rules)`` validates one chunk and adds its statistics to ``acc``, where
# acc: the update's zero-initialised delta state (torch tensors, or NumPy views of them), added to in place;
# ws: the update's Workspace, on the input's device; p: ``(C', n)`` probabilities (``C' == 1``: sigmoid foreground);
# t: ``(1, n)`` class indices or ``(C, n)`` one-hot; m: optional boolean ``(n,)`` mask; rules: the update's
# ChunkRules. Raises ValueError as validate_chunk and check_sum do.
Accumulator = Callable[[dict[str, Any], Workspace, torch.Tensor, torch.Tensor, torch.Tensor | None, ChunkRules], None]
