# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""CPU update path of :class:`~monai_meep.metrics.CalibrationHistogram`: one chunk's statistics in NumPy.

Why NumPy: dozens of millisecond-sized torch ops per chunk each open an OpenMP parallel region (and BLAS threads for
dot products); on a loaded, shared CPU every barrier waits for a descheduled thread, which made the update 4-50x
slower with 2 threads than with 1. NumPy's element-wise loops never start threads. The codes and statistics are those
of the torch path (:mod:`._histogram_torch`, used on CUDA); the tests run both on the CPU against one reference.
"""

from __future__ import annotations

import numpy as np
import torch

from ._histogram_common import ArrayOps, ChunkRules, Workspace, add_coded, check_sum, validate_chunk

__all__ = ["accumulate_numpy"]

NUMPY_OPS = ArrayOps(
    minmax=lambda x: (x.min(), x.max()),
    isfinite=np.isfinite,
    round=np.round,
    is_floating=lambda x: x.dtype.kind == "f",
    to_int64=lambda x: x.astype(np.int64),
)


def accumulate_numpy(
    acc: dict[str, np.ndarray],
    ws: Workspace,
    p: torch.Tensor,
    t: torch.Tensor,
    m: torch.Tensor | None,
    rules: ChunkRules,
) -> None:
    """Validate one CPU chunk and add its statistics to ``acc`` (NumPy views of the update's delta state).

    An ``Accumulator`` of :mod:`._histogram_common` (arguments and errors documented there).
    """
    c, s_bins = ws.c, ws.s_bins
    eps = float(torch.finfo(p.dtype).eps)
    # NumPy has no bfloat16; float32 holds it exactly
    p, t = (x.float() if x.dtype == torch.bfloat16 else x for x in (p, t))
    p, y = validate_chunk(p.detach().numpy(), t.detach().numpy(), None if m is None else m.numpy(), rules, c, NUMPY_OPS)
    n = y.size
    if n == 0:
        return
    p64, tmp, code = (buf.numpy()[: c * n].reshape(c, n) for buf in (ws.p64, ws.tmp, ws.code))
    if p.shape[0] == 1:  # sigmoid foreground probability -> [1 - p, p]; 1 - p is computed in float64
        p64[1] = p[0]
        np.subtract(1.0, p64[1], out=p64[0])
    else:
        p64[...] = p
        if rules.sum_tol is not None:
            check_sum(np.sum(p64, 0, out=tmp[0]), rules.sum_tol, NUMPY_OPS)
    # sub-bin floor(p * S) (exact in float64 for float32/16 inputs); p == 1 goes to the closed last bin
    np.minimum(np.multiply(p64, s_bins, out=tmp), s_bins - 1, out=tmp)
    np.copyto(code, tmp, casting="unsafe")  # truncation == floor for p >= 0
    tcode = np.max(code, 0, out=ws.tcode.numpy()[:n])  # top-label sub-bin: floor and clamp are monotone
    # positions of (y_i, i) in the flattened (C, n) chunk: the labelled class of every voxel
    at = np.multiply(y, n, out=ws.pred.numpy()[:n])
    at += ws.arange.numpy()[:n]
    # code 2 * (c * S + s) + [y == c]
    np.multiply(code, 2, out=code)
    code += ws.offsets.numpy()
    flat, p_flat = code.reshape(-1), p64.reshape(-1)
    flat[at] += 1
    add_coded(acc, ("counts", "positives", "prob_sums"), np.bincount, flat, p_flat, (c, s_bins))
    p_y = np.take(p_flat, at, out=ws.p_y.numpy()[:n])
    # top label: confidence max_c p_c; correct = (first arg-max == y), ties resolved as torch.max / np.argmax
    conf, pred, gt = ws.conf.numpy()[:n], ws.pred2.numpy()[:n], ws.flag.numpy()[:n]
    np.greater(p64[1], p64[0], out=gt)
    np.copyto(pred, gt)
    np.maximum(p64[0], p64[1], out=conf)
    for k in range(2, c):  # a strictly larger p_k makes k the arg-max, and k exceeds every earlier arg-max
        np.maximum(pred, np.multiply(np.greater(p64[k], conf, out=gt), k, out=ws.iscr.numpy()[:n]), out=pred)
        np.maximum(conf, p64[k], out=conf)
    tcode *= 2
    tcode += np.equal(pred, y, out=gt)
    add_coded(acc, ("top_counts", "top_correct", "top_conf_sums"), np.bincount, tcode, conf, (s_bins,))
    # Brier: p - onehot(y) in place, one sum of squares per class (einsum: its own SIMD loop, no BLAS threads)
    p_flat[at] -= 1.0
    acc["brier_sums"] += np.einsum("cn,cn->c", p64, p64)
    d_y = np.subtract(p_y, 1.0, out=conf)
    acc["brier_pos_sums"] += np.bincount(y, d_y * d_y, minlength=c)
    # NLL: sum of logs = log of products over groups of g voxels (eps^g stays a normal float64: no underflow),
    # one log per group instead of per voxel; the padding after p_y is ones
    g = ws.group(eps)
    full = ws.p_y.numpy()[: n + (-n % g)]
    np.maximum(full, eps, out=full)
    full[n:] = 1.0
    acc["nll_sum"] -= np.log(full.reshape(g, -1).prod(0)).sum()  # row products: element-wise, vectorised
