# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Torch update path of :class:`~monai_meep.metrics.CalibrationHistogram` (CUDA; on the CPU only when tests ask).

Every statistic of a chunk costs a few passes over cache-resident workspace buffers (no allocation of chunk-sized
tensors, whose page faults cost more than the arithmetic) and four serial ``bincount`` calls, each over all classes at
once: a code ``2 * (c * S + s) + [y == c]`` gives counts and positives in one call and split probability sums in
another (top label likewise with ``2 * s + correct``). The NumPy twin (:mod:`._histogram_numpy`) computes the same.
"""

from __future__ import annotations

import torch

from ._histogram_common import ArrayOps, ChunkRules, Workspace, add_coded, check_sum, validate_chunk

__all__ = ["accumulate_torch"]

TORCH_OPS = ArrayOps(
    minmax=torch.aminmax,
    isfinite=torch.isfinite,
    round=torch.round,
    is_floating=torch.is_floating_point,
    to_int64=lambda x: x.long(),
)


def accumulate_torch(
    acc: dict[str, torch.Tensor],
    ws: Workspace,
    p: torch.Tensor,
    t: torch.Tensor,
    m: torch.Tensor | None,
    rules: ChunkRules,
) -> None:
    """Validate one chunk and add its statistics to ``acc`` (the update's delta state, on the input's device).

    An ``Accumulator`` of :mod:`._histogram_common` (arguments and errors documented there).
    """
    c, s_bins = ws.c, ws.s_bins
    eps = torch.finfo(p.dtype).eps
    p, y = validate_chunk(p, t, m, rules, c, TORCH_OPS)
    n = y.numel()
    if n == 0:
        return
    p64, tmp, code = (buf[: c * n].view(c, n) for buf in (ws.p64, ws.tmp, ws.code))
    if p.shape[0] == 1:  # sigmoid foreground probability -> [1 - p, p]; 1 - p is computed in float64
        p64[1].copy_(p[0])
        torch.neg(p64[1], out=p64[0]).add_(1.0)
    else:
        p64.copy_(p)
        if rules.sum_tol is not None:
            check_sum(torch.sum(p64, 0, out=tmp[0]), rules.sum_tol, TORCH_OPS)
    y1 = y.unsqueeze(0)
    # sub-bin floor(p * S): p * S is exact in float64 for float32/16 inputs; the float -> int64 copy truncates,
    # and p == 1 (the closed last bin) is clamped to S - 1 after it.
    code.copy_(torch.mul(p64, s_bins, out=tmp)).clamp_(max=s_bins - 1)
    # top-label sub-bin = max over classes of the class sub-bins (floor and clamp are monotone), taken before
    # the codes are rewritten
    tcode = ws.tcode[:n]
    torch.amax(code, 0, out=tcode) if c > 2 else torch.maximum(code[0], code[1], out=tcode)
    torch.add(ws.offsets, code, alpha=2, out=code)
    code.scatter_add_(0, y1, ws.ones[:, :n])  # + [y == c]
    add_coded(acc, ("counts", "positives", "prob_sums"), torch.bincount, code.view(-1), p64.view(-1), (c, s_bins))
    # top label: confidence = max_c p_c, correct = (first arg-max == y), ties resolved as torch.max / argmax
    conf, pred = ws.conf[:n], ws.pred[:n]
    torch.gt(p64[1], p64[0], out=pred)  # int64 output: the arg-max of the first two classes
    torch.maximum(p64[0], p64[1], out=conf)
    for k in range(2, c):
        torch.where(torch.gt(p64[k], conf, out=ws.flag[:n]), ws.labels[k], pred, out=pred)
        torch.maximum(conf, p64[k], out=conf)
    torch.add(torch.eq(pred, y, out=pred), tcode, alpha=2, out=tcode)
    add_coded(acc, ("top_counts", "top_correct", "top_conf_sums"), torch.bincount, tcode, conf, (s_bins,))
    # Brier: p - onehot(y) in place, then one dot product per class (BLAS; einsum was 3x slower); Brier+ from p_y
    p_y = torch.gather(p64, 0, y1, out=ws.p_y[: n + ws.pad].view(1, -1)[:, :n])[0]
    p64.scatter_add_(0, y1, ws.minus_ones[:, :n])
    acc["brier_sums"] += torch.stack([torch.dot(row, row) for row in p64])
    d_y = torch.sub(p_y, 1.0, out=ws.conf[:n])
    acc["brier_pos_sums"] += torch.bincount(y, d_y.mul_(d_y), minlength=c)
    # NLL: sum of logs = log of products over groups of g voxels (>= eps^g stays a normal float64, no underflow):
    # one log per group instead of per voxel; the padding after p_y is ones
    g = ws.group(eps)
    pad = -n % g
    full = ws.p_y[: n + pad].clamp_(min=eps)
    full[n:] = 1.0
    acc["nll_sum"] -= torch.log(full.view(-1, g).prod(1)).sum()
