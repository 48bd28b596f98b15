# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Compiled CPU update path of :class:`~monai_meep.metrics.CalibrationHistogram`: one pass over the input, in Numba.

Why compiled: the NumPy path (:mod:`._histogram_numpy`) makes about twenty passes over float64 temporaries and five
single-threaded ``bincount`` calls per chunk; here each voxel is read from memory once and every statistic
(validation, marginal and top-label sub-bins, Brier, NLL) is added while it is in cache, straight from the network's
dtype and layout (no float64 copy, no chunk workspace). Class-index labels take the blocked kernels of
:mod:`._histogram_numba_blocks` (vectorised over blocks of voxels that stay in L1), one-hot targets the voxel-by-voxel
kernels of :mod:`._histogram_numba_kernels`; both fill the same records (the same counts; probability sums bit for
bit, or to about 1e-16 with two classes).

Parallelism as every CPU kernel of the package (:mod:`monai_meep.kernels.parts`): the voxels are split into contiguous
*parts* by input size only, each part adds into its own private histogram, and the parts are summed in a fixed order,
so the result is the same bytes whatever the number of threads.

Errors are detected in the same pass (bad probabilities anywhere, bad labels or one-hot vectors where scored, channel
sums off by more than the tolerance); the message then comes from re-running the NumPy path on the same input, which
raises exactly what it would have raised, so both paths refuse the same inputs with the same words.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

import numpy as np
import torch

from monai_meep.kernels.parts import run_parts
from monai_meep.utils import NUMBA_LABEL_DTYPES, import_numba_kernels, numba_labels

from ._histogram_common import FLAG_BAD_P, FLAG_BAD_SUM, FLAG_BAD_Y, FLAG_NLL, ChunkRules, Workspace

# whether Numba is installed; it is imported (with the kernels) on the first CPU update, see _kernels
HAS_NUMBA = importlib.util.find_spec("numba") is not None

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
_NATIVE_LABELS = tuple(getattr(torch, name) for name in NUMBA_LABEL_DTYPES)


@functools.cache
def _kernels() -> ModuleType | None:
    """The voxel-by-voxel kernel module (one-hot targets), imported (with Numba) on first use; ``None``, with one
    warning, if Numba fails to import."""
    return import_numba_kernels(
        f"{__package__}._histogram_numba_kernels", "calibration histograms use the slower NumPy path"
    )


def _block_kernels() -> ModuleType | None:
    """The blocked kernel module (class-index labels); ``None`` whenever :func:`_kernels` is (so one warning)."""
    return None if _kernels() is None else _import_block_kernels()


@functools.cache
def _import_block_kernels() -> ModuleType | None:
    """Import :mod:`._histogram_numba_blocks` once."""
    return import_numba_kernels(f"{__package__}._histogram_numba_blocks", "calibration histograms use the NumPy path")


def _part_bounds(total: int, c: int, s_bins: int) -> list[tuple[int, int]]:
    """Contiguous voxel ranges, as many as the input size (not the thread count) and the memory cap allow."""
    part_bytes = 16 * (c + 1) * s_bins
    parts = max(1, min(MAX_PARTS, total // MIN_PART_VOXELS, PART_BYTES // part_bytes), -(-total // MAX_PART_VOXELS))
    edges = [total * k // parts for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts) if edges[k + 1] > edges[k]]


def _as_kernel_input(p: torch.Tensor, t: torch.Tensor, m: torch.Tensor | None):
    p = p if p.dtype in (torch.float32, torch.float64) else p.float()
    t = numba_labels(t)
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
        channel sum is invalid, or Numba failed to import: ``acc`` must then be discarded, and the caller re-runs the
        NumPy path (which raises the error, or computes the update).
    """
    eps = float(torch.finfo(p3.dtype).eps)  # of the input dtype, as the NumPy path: before any float32 conversion
    sum_tol = -1.0 if rules.sum_tol is None or p3.shape[1] == 1 else float(rules.sum_tol)
    ignore = 0 if rules.ignore_index is None else int(rules.ignore_index)
    scalars = (s_bins, sum_tol, eps, Workspace.group(eps))
    # class-index labels take the blocked kernels (vectorised, several times faster); one-hot targets the scalar ones
    kernels = _kernels() if rules.onehot else _block_kernels()
    if kernels is None:
        return False  # Numba would not import: the NumPy path computes this update
    kernel = kernels.binary_kernel if c == 2 else kernels.multiclass_kernel(c)
    flags = np.zeros(4)
    for p, t, m in _blocks(p3, t3, m3):
        if p.shape[0] * p.shape[2] == 0:
            continue
        inputs = (p, t, m, m3 is not None, rules.onehot, ignore, rules.ignore_index is not None)
        counts, sums, stats = _run_parts(kernel, (*inputs, *scalars), c, s_bins)
        tail = stats[:, 2 * c :]
        flags[FLAG_NLL] += tail[:, FLAG_NLL].sum()
        flags[FLAG_BAD_SUM] += tail[:, FLAG_BAD_SUM].sum()
        flags[FLAG_BAD_P] += tail[:, FLAG_BAD_P].sum()
        flags[FLAG_BAD_Y] += tail[:, FLAG_BAD_Y].sum()
        if flags[FLAG_BAD_P] or flags[FLAG_BAD_Y] or flags[FLAG_BAD_SUM]:
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
    acc["nll_sum"] += flags[FLAG_NLL]
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
    run_parts(run, len(bounds))
    return counts, sums, stats
