# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Triton calibration histogram: the ``counts`` / ``positives`` / ``prob_sums`` of ``CalibrationHistogram.update``.

Reference: :meth:`monai_meep.metrics.CalibrationHistogram.update` (float64 ``bincount``). For class ``c`` and sub-bin
``s = clamp(floor(p_c * S), 0, S - 1)`` (computed in float64, so exact for float32 / float16 / bfloat16 inputs; a
one-channel sigmoid input is expanded to ``[1 - p, p]`` with ``1 - p`` exact in float64):

- ``counts[c, s]`` (int64), ``positives[c, s]`` (int64, label == c): exact;
- ``prob_sums[c, s]`` (float64): float64 sums of the same float64 values; they differ from the reference only by
  the order of the additions (~1e-16 relative; the tests check 1e-12).

How: each program takes ``16 x 64`` voxels of one class, 64 at a time. The 64 voxels are matched against each other
(an all-pairs 64 x 64 tile in registers): the first voxel of each sub-bin present sums the float64 probabilities and
the count / positives of its sub-bin -- the tile's private histogram -- and merges it once into the global bins, with
one int64 atomic (count and positives packed in its two halves) and one float64 atomic. A tile with ``k`` distinct
sub-bins costs ``2 k`` atomics instead of 3 per voxel; a confident network puts most voxels in a handful of
sub-bins (the worst case, uniformly spread probabilities, costs about two atomics per voxel). Float64 atomics make
``prob_sums`` independent of the launch order up to float64 rounding (~1e-16 relative).
"""

from __future__ import annotations

import contextlib

import torch
from monai.utils import optional_import

triton, HAS_TRITON = optional_import("triton")
tl, _ = optional_import("triton.language")

__all__ = ["triton_histogram"]

# voxels matched against each other at once (an all-pairs SUB x SUB tile), and tiles per program
_SUB = 64
_ITERS = 16
# counts and positives of one call share an int64 (low / high 32 bits): a call handles < 2**31 voxels per class.
_MAX_VOXELS = (1 << 31) - 1


if HAS_TRITON:

    @triton.jit
    def _hist_kernel(
        p_ptr, t_ptr, m_ptr, cp_ptr, sum_ptr, N, n_blocks, S, C_IN, ignore_value,
        NUM_SUB: tl.constexpr, SUB: tl.constexpr, ITERS: tl.constexpr, EXPAND: tl.constexpr, ONEHOT: tl.constexpr,
        TGT_FLOAT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_IGNORE: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        c = tl.program_id(1)  # output class
        b = pid // n_blocks
        lane = tl.arange(0, SUB)
        for it in range(ITERS):
            offs = ((pid % n_blocks) * ITERS + it) * SUB + lane
            inb = offs < N
            keep = inb
            # is the voxel labelled c?
            if ONEHOT:
                # one-hot (B, C, N): channel c is 1 (the caller checked one-hotness)
                toff = (b.to(tl.int64) * C_IN + c) * N + offs
                is_pos = tl.load(t_ptr + toff, mask=inb, other=0).to(tl.float32) != 0.0
            else:
                t = tl.load(t_ptr + b.to(tl.int64) * N + offs, mask=inb, other=0)
                if TGT_FLOAT:
                    tf = t.to(tl.float32)
                    is_pos = tf == c.to(tl.float32)
                    if HAS_IGNORE:
                        keep = keep & (tf != ignore_value)
                else:
                    ti = t.to(tl.int64)
                    is_pos = ti == c.to(tl.int64)
                    if HAS_IGNORE:
                        keep = keep & (ti != ignore_value)
            if HAS_MASK:
                keep = keep & (tl.load(m_ptr + b.to(tl.int64) * N + offs, mask=inb, other=0) != 0)
            # the probability of class c exactly as the float64 reference sees it
            if EXPAND:
                p = tl.load(p_ptr + b.to(tl.int64) * N + offs, mask=inb, other=0.0).to(tl.float64)
                p = tl.where(c == 0, 1.0 - p, p)  # 1 - p is exact in float64 for a float32 p
            else:
                p = tl.load(p_ptr + (b.to(tl.int64) * C_IN + c) * N + offs, mask=inb, other=0.0).to(tl.float64)
            sub = tl.minimum(tl.maximum(tl.floor(p * S), 0.0), S - 1.0).to(tl.int32)
            # dropped voxels get the sentinel bin NUM_SUB: never written
            sub = tl.where(keep, sub, NUM_SUB)
            # private bins of these SUB voxels: all-pairs match; the first voxel of each sub-bin (its "leader")
            # holds the sums of its sub-bin and writes them, so each sub-bin costs one atomic pair, not one per voxel.
            same = sub[:, None] == sub[None, :]
            run_sum = tl.sum(tl.where(same, p[None, :], 0.0), axis=1)
            # count in the low 32 bits, positives in the high 32 bits of one int64
            cp = 1 + (is_pos.to(tl.int64) << 32)
            run_cp = tl.sum(tl.where(same, cp[None, :], 0), axis=1)
            first = tl.min(tl.where(same, lane[None, :], SUB), axis=1)
            leader = (first == lane) & (sub < NUM_SUB)
            dst = c.to(tl.int64) * S + tl.minimum(sub, NUM_SUB - 1)
            tl.atomic_add(cp_ptr + dst, run_cp, mask=leader)
            tl.atomic_add(sum_ptr + dst, run_sum, mask=leader)


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def triton_histogram(
    probs: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    num_sub_bins: int,
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sub-bin histogram of one batch: the ``counts``, ``positives`` and ``prob_sums`` increments of an update.

    Inputs are assumed valid (``CalibrationHistogram.update`` checks them: probabilities in [0, 1], integer labels in
    ``[0, C)`` where accumulated, a proper one-hot); only shapes are checked here.

    Args:
        probs: ``(B, C, *spatial)`` probabilities, or ``(B, 1, *spatial)`` sigmoid foreground when ``num_classes == 2``.
        target: ``(B, 1, *spatial)`` class indices (any dtype) or ``(B, C, *spatial)`` one-hot.
        num_classes: ``C`` (>= 2).
        num_sub_bins: ``S`` uniform sub-bins of [0, 1] (the last one closed).
        mask: optional ``(B, 1, *spatial)``; only nonzero voxels count.
        ignore_index: label skipped (index targets only).

    Returns:
        ``(counts, positives, prob_sums)``: int64, int64, float64, each ``(C, S)``, on ``probs.device``.

    Raises:
        ValueError: without triton, on shape mismatches, or on more than 2**31 - 1 voxels per class in one call.

    Example:
        >>> p = torch.softmax(torch.randn(2, 3, 40, 40, device="cuda"), 1)  # doctest: +SKIP
        >>> y = torch.randint(0, 3, (2, 1, 40, 40), device="cuda")  # doctest: +SKIP
        >>> counts, positives, sums = triton_histogram(p, y, num_classes=3, num_sub_bins=6000)  # doctest: +SKIP
    """
    if not HAS_TRITON:
        raise ValueError("triton_histogram needs triton; use monai_meep.metrics.CalibrationHistogram instead.")
    probs, target = _plain(probs), _plain(target)
    c, s = int(num_classes), int(num_sub_bins)
    if probs.ndim < 2 or not probs.is_floating_point() or probs.shape[1] not in ((1, c) if c == 2 else (c,)):
        raise ValueError(f"probs must be a float (B, {c}, *spatial) tensor (or (B, 1, *) for 2 classes), got "
                         f"{probs.dtype} {tuple(probs.shape)}.")  # fmt: skip
    b, spatial = probs.shape[0], tuple(probs.shape[2:])
    if target.ndim != probs.ndim or target.shape[0] != b or tuple(target.shape[2:]) != spatial \
            or target.shape[1] not in (1, c):  # fmt: skip
        raise ValueError(f"target shape {tuple(target.shape)} does not match probs shape {tuple(probs.shape)}.")
    if mask is not None and tuple(mask.shape) != (b, 1, *spatial):
        raise ValueError(f"mask shape {tuple(mask.shape)} must be ({b}, 1, *spatial) for probs {tuple(probs.shape)}.")
    n = probs[0, 0].numel()
    if b * n > _MAX_VOXELS:
        raise ValueError(f"{b * n} voxels per class in one call; split the batch below 2**31.")
    onehot = target.shape[1] == c and c > 1
    if target.dtype == torch.bool:
        target = target.to(torch.uint8)
    if mask is not None:
        mask = _plain(mask)
        mask = (mask != 0).to(torch.uint8) if mask.dtype != torch.uint8 else mask
    dev = probs.device
    cp = torch.zeros(c * s, dtype=torch.int64, device=dev)
    sums = torch.zeros(c * s, dtype=torch.float64, device=dev)
    # fewer tiles per program for small images (a power of 2, so few compiled variants)
    iters = min(_ITERS, triton.next_power_of_2(triton.cdiv(max(n, 1), _SUB)))
    n_blocks = triton.cdiv(n, _SUB * iters)
    if b * n > 0:
        ign = 0 if ignore_index is None else (float(ignore_index) if target.is_floating_point() else int(ignore_index))
        with torch.cuda.device(dev) if probs.is_cuda else contextlib.nullcontext():
            _hist_kernel[(b * n_blocks, c)](
                probs.contiguous(), target.contiguous(), probs if mask is None else mask.contiguous(), cp, sums,
                n, n_blocks, s, probs.shape[1], ign,
                NUM_SUB=s, SUB=_SUB, ITERS=iters, EXPAND=probs.shape[1] == 1, ONEHOT=onehot,
                TGT_FLOAT=target.is_floating_point(), HAS_MASK=mask is not None,
                HAS_IGNORE=ignore_index is not None and not onehot,
            )  # fmt: skip
    counts = (cp & 0xFFFFFFFF).view(c, s)
    positives = (cp >> 32).view(c, s)
    return counts, positives, sums.view(c, s)
