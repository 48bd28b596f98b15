# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Fused MEEP regulariser: one Triton pass over the logits forward, one backward.

The PyTorch reference is :func:`monai_meep.losses.functional.regulariser_sum_count` (``_reference_sum_count``): the
same ``(total, count)`` pair, the same misclassified set ``W`` (softmax: ``argmax_k z != y``; sigmoid:
``(z > 0) != y`` per channel; ``ignore_index`` excluded; no gradient through the mask), the same per-element entropy
or ``KL(u || p)`` computed from ``log_softmax`` / ``logsigmoid``. The forward kernel reads each logit once and writes
one partial sum and one count per program; the backward kernel reads the logits again and writes
``d total / d logits`` (``-p_j (log p_j + H)`` for the entropy, ``p_j - 1/K`` for the KL) in the logits' dtype.
Maths runs in float32 for float32 / bfloat16 / float16 logits (float64 for float64, which ``gradcheck`` uses).

Any spatial size works (the last block is masked); the layout is contiguous ``(B, C, *spatial)``.
"""

from __future__ import annotations

import contextlib

import torch
from monai.utils import optional_import

from monai_meep.enums import Activation, Regularizer, look_up

triton, HAS_TRITON = optional_import("triton")
tl, _ = optional_import("triton.language")

__all__ = ["HAS_TRITON", "fused_meep_regularizer", "fused_sum_count"]

# the kernels' integer codes of the regulariser (monai_meep.enums.Regularizer) and the activation
_KINDS = {Regularizer.MEEP_ENTROPY: 0, Regularizer.MEEP_KL: 1, Regularizer.CONFIDENCE_PENALTY: 2}
_ACTS = {Activation.SOFTMAX: 0, Activation.SIGMOID: 1}
# elements (channels x voxels) one program holds: large enough to amortise the launch, small enough for registers.
_TILE = 4096


if HAS_TRITON:

    @triton.jit
    def _log1p_small(x):
        # log(1 + x) for x in [0, 1] without the cancellation of log(1 + x) at tiny x (Goldberg's trick).
        u = 1.0 + x
        return tl.where(u == 1.0, x, tl.log(u) * x / (u - 1.0))

    @triton.jit
    def _load_tile(
        z_ptr, t_ptr, v_ptr, b, pid_s, S, C, ignore_value,
        ACT: tl.constexpr, KIND: tl.constexpr, C_PAD: tl.constexpr, BLOCK: tl.constexpr,
        TGT_PER_CHANNEL: tl.constexpr, TGT_FLOAT: tl.constexpr, HAS_TARGET: tl.constexpr,
        HAS_IGNORE: tl.constexpr, HAS_VALID: tl.constexpr, F64: tl.constexpr, SIG_BINARY: tl.constexpr,
    ):  # fmt: skip
        """Logits tile ``(C_PAD, BLOCK)`` in the compute dtype, the selection mask and the element offsets."""
        offs = pid_s * BLOCK + tl.arange(0, BLOCK)
        smask = offs < S
        ch = tl.arange(0, C_PAD)
        cmask = ch < C
        m2 = cmask[:, None] & smask[None, :]
        # int64 offsets: B * C * S can pass 2**31 for large 3D batches.
        zoff = b.to(tl.int64) * C * S + ch[:, None].to(tl.int64) * S + offs[None, :]
        z = tl.load(z_ptr + zoff, mask=m2, other=0.0)
        z = z.to(tl.float64) if F64 else z.to(tl.float32)

        # valid (scored) voxels, (BLOCK,)
        valid = smask
        if HAS_TARGET:
            toff = b.to(tl.int64) * S + offs  # index target / valid mask: (B, 1, S)
            if TGT_PER_CHANNEL:
                t2 = tl.load(t_ptr + zoff, mask=m2, other=0)
            else:
                t1 = tl.load(t_ptr + toff, mask=smask, other=0)
            if HAS_IGNORE:
                if TGT_FLOAT:
                    valid = valid & (t1.to(tl.float32) != ignore_value)
                else:
                    valid = valid & (t1.to(tl.int64) != ignore_value)
            if HAS_VALID:
                valid = valid & (tl.load(v_ptr + toff, mask=smask, other=0) != 0)

        if ACT == 0:
            # softmax over channels; padded channels are -inf so they vanish from max / sum / argmax.
            z = tl.where(cmask[:, None], z, float("-inf"))
            sel = valid
            if KIND != 2:
                pred = tl.argmax(z, axis=0, tie_break_left=True)  # first maximum, as torch.argmax
                if TGT_FLOAT:
                    wrong = pred.to(tl.float32) != t1.to(tl.float32)
                else:
                    wrong = pred.to(tl.int64) != t1.to(tl.int64)
                sel = sel & wrong
        else:
            sel = valid[None, :] & cmask[:, None]
            if KIND != 2:
                if TGT_PER_CHANNEL:
                    tt = t2
                else:
                    tt = t1[None, :]
                if SIG_BINARY:
                    if TGT_FLOAT:
                        pos = tt.to(tl.float32) > 0.5
                    else:
                        pos = tt.to(tl.int64) != 0
                elif TGT_PER_CHANNEL:
                    if TGT_FLOAT:
                        pos = tt.to(tl.float32) > 0.5
                    else:
                        pos = tt.to(tl.int64) != 0
                else:
                    # index map for a multi-channel sigmoid: channel c is "label == c"
                    if TGT_FLOAT:
                        pos = tt.to(tl.float32) == ch[:, None].to(tl.float32)
                    else:
                        pos = tt.to(tl.int64) == ch[:, None].to(tl.int64)
                sel = sel & ((z > 0) != pos)
        return z, sel, zoff, m2, cmask

    @triton.jit
    def _softmax_parts(z, cmask):
        m = tl.max(z, axis=0)
        zs = z - m[None, :]
        e = tl.exp(zs)
        se = tl.sum(e, axis=0)
        logp = tl.where(cmask[:, None], zs - tl.log(se)[None, :], 0.0)
        p = e / se[None, :]
        return logp, p

    @triton.jit
    def _sigmoid_parts(z):
        # logsigmoid(z) = min(z, 0) - log1p(exp(-|z|)), logsigmoid(-z) likewise: no overflow, no log(0).
        l1p = _log1p_small(tl.exp(-tl.abs(z)))
        logp = tl.minimum(z, 0.0) - l1p
        logq = tl.minimum(-z, 0.0) - l1p
        return logp, logq

    @triton.jit
    def _meep_fwd_kernel(
        z_ptr, t_ptr, v_ptr, psum_ptr, pcnt_ptr, S, C, n_sblocks, ignore_value, K,
        ACT: tl.constexpr, KIND: tl.constexpr, C_PAD: tl.constexpr, BLOCK: tl.constexpr,
        TGT_PER_CHANNEL: tl.constexpr, TGT_FLOAT: tl.constexpr, HAS_TARGET: tl.constexpr,
        HAS_IGNORE: tl.constexpr, HAS_VALID: tl.constexpr, F64: tl.constexpr, SIG_BINARY: tl.constexpr,
    ):  # fmt: skip
        pid_s = tl.program_id(0)
        b = tl.program_id(1)
        z, sel, zoff, m2, cmask = _load_tile(
            z_ptr, t_ptr, v_ptr, b, pid_s, S, C, ignore_value, ACT, KIND, C_PAD, BLOCK,
            TGT_PER_CHANNEL, TGT_FLOAT, HAS_TARGET, HAS_IGNORE, HAS_VALID, F64, SIG_BINARY,
        )  # fmt: skip
        kf = K.to(tl.float64) if F64 else K.to(tl.float32)
        if ACT == 0:
            logp, p = _softmax_parts(z, cmask)
            if KIND == 1:
                val = -tl.log(kf) - tl.sum(logp, axis=0) / kf
            else:
                val = -tl.sum(p * logp, axis=0)
        else:
            logp, logq = _sigmoid_parts(z)
            if KIND == 1:
                val = -tl.log(kf) - 0.5 * (logp + logq)
            else:
                val = -(tl.exp(logp) * logp + tl.exp(logq) * logq)
        val = tl.where(sel, val, 0.0)
        total = tl.sum(val)
        count = tl.sum(sel.to(tl.int32))
        slot = b * n_sblocks + pid_s
        tl.store(psum_ptr + slot, total)
        tl.store(pcnt_ptr + slot, count)

    @triton.jit
    def _meep_bwd_kernel(
        z_ptr, t_ptr, v_ptr, g_ptr, dz_ptr, S, C, ignore_value, K,
        ACT: tl.constexpr, KIND: tl.constexpr, C_PAD: tl.constexpr, BLOCK: tl.constexpr,
        TGT_PER_CHANNEL: tl.constexpr, TGT_FLOAT: tl.constexpr, HAS_TARGET: tl.constexpr,
        HAS_IGNORE: tl.constexpr, HAS_VALID: tl.constexpr, F64: tl.constexpr, SIG_BINARY: tl.constexpr,
    ):  # fmt: skip
        pid_s = tl.program_id(0)
        b = tl.program_id(1)
        z, sel, zoff, m2, cmask = _load_tile(
            z_ptr, t_ptr, v_ptr, b, pid_s, S, C, ignore_value, ACT, KIND, C_PAD, BLOCK,
            TGT_PER_CHANNEL, TGT_FLOAT, HAS_TARGET, HAS_IGNORE, HAS_VALID, F64, SIG_BINARY,
        )  # fmt: skip
        # upstream gradient of the total read on the device: no host sync between forward and backward.
        g = tl.load(g_ptr)
        g = g.to(tl.float64) if F64 else g.to(tl.float32)
        kf = K.to(tl.float64) if F64 else K.to(tl.float32)
        if ACT == 0:
            logp, p = _softmax_parts(z, cmask)
            if KIND == 1:
                d = p - 1.0 / kf  # d/dz_j [-(1/K) sum_k log p_k] = p_j - 1/K
            else:
                ent = -tl.sum(p * logp, axis=0)
                d = -p * (logp + ent[None, :])  # d H / d z_j = -p_j (log p_j + H)
            d = tl.where(sel[None, :], d, 0.0)
        else:
            logp, logq = _sigmoid_parts(z)
            p = tl.exp(logp)
            if KIND == 1:
                d = p - 0.5
            else:
                d = -z * p * tl.exp(logq)  # d H / d z = -z p (1 - p)
            d = tl.where(sel, d, 0.0)
        tl.store(dz_ptr + zoff, (d * g).to(dz_ptr.dtype.element_ty), mask=m2)


def _on_device(t: torch.Tensor):
    # Triton launches on the current CUDA device: make it the tensor's (multi-GPU, one process per device or not)
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _plain(x: torch.Tensor) -> torch.Tensor:
    # MONAI MetaTensor -> torch.Tensor (still attached to the autograd graph)
    return x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x


def _launch_config(logits: torch.Tensor, kind: str, activation: str, target, valid, ignore_value) -> dict:
    c = logits.shape[1]
    c_pad = triton.next_power_of_2(c)
    block = max(16, min(1024, _TILE // c_pad))
    s = logits[0, 0].numel()
    meta = dict(
        ACT=_ACTS[activation],
        KIND=_KINDS[kind],
        C_PAD=c_pad,
        BLOCK=block,
        TGT_PER_CHANNEL=target is not None and target.shape[1] > 1,
        TGT_FLOAT=target is not None and target.is_floating_point(),
        HAS_TARGET=target is not None,
        HAS_IGNORE=ignore_value is not None,
        HAS_VALID=valid is not None,
        F64=logits.dtype == torch.float64,
        SIG_BINARY=activation == "sigmoid" and c == 1,
    )
    grid = (triton.cdiv(s, block), logits.shape[0])
    return dict(meta=meta, grid=grid, S=s, C=c)


class _FusedSumCount(torch.autograd.Function):
    """``(total, count)`` of the MEEP regulariser; gradient of ``total`` w.r.t. the logits by the backward kernel."""

    @staticmethod
    def forward(ctx, logits, target, valid, kind, activation, ignore_value):  # type: ignore[override]
        cfg = _launch_config(logits, kind, activation, target, valid, ignore_value)
        n_sblocks, b = cfg["grid"]
        acc_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        psum = torch.empty(n_sblocks * b, dtype=acc_dtype, device=logits.device)
        pcnt = torch.empty(n_sblocks * b, dtype=torch.int32, device=logits.device)
        dummy = logits  # an unused pointer argument still needs a tensor
        ign = 0 if ignore_value is None else ignore_value
        with _on_device(logits):
            _meep_fwd_kernel[cfg["grid"]](
                logits, dummy if target is None else target, dummy if valid is None else valid, psum, pcnt,
                cfg["S"], cfg["C"], n_sblocks, ign, 2 if activation == "sigmoid" else cfg["C"],
                **cfg["meta"],
            )  # fmt: skip
        # partial sums merged in float64: the float32 total is then correctly rounded, whatever the grid size.
        total = psum.sum(dtype=torch.float64).to(acc_dtype)
        count = pcnt.sum(dtype=torch.int64)
        ctx.save_for_backward(logits, target, valid)
        ctx.cfg = (kind, activation, ignore_value)
        ctx.mark_non_differentiable(count)
        return total, count

    @staticmethod
    def backward(ctx, grad_total, grad_count):  # type: ignore[override]
        logits, target, valid = ctx.saved_tensors
        kind, activation, ignore_value = ctx.cfg
        cfg = _launch_config(logits, kind, activation, target, valid, ignore_value)
        dz = torch.empty_like(logits)
        g = grad_total.reshape(1).contiguous()
        ign = 0 if ignore_value is None else ignore_value
        with _on_device(logits):
            _meep_bwd_kernel[cfg["grid"]](
                logits, logits if target is None else target, logits if valid is None else valid, g, dz,
                cfg["S"], cfg["C"], ign, 2 if activation == "sigmoid" else cfg["C"], **cfg["meta"],
            )  # fmt: skip
        return dz, None, None, None, None, None


def _split_target(
    logits: torch.Tensor, target: torch.Tensor | None, activation: str, ignore_index: int | None
) -> tuple[torch.Tensor | None, torch.Tensor | None, int | float | None]:
    """Kernel view of the target: ``(target, valid, ignore_value)`` following the reference's conventions.

    Index maps (one channel) go to the kernel as they are (it compares with ``ignore_index`` itself). A one-hot
    target becomes, for softmax, its arg-max index map with ignored voxels set to -1; for sigmoid it stays per channel
    and the ignore rule of the reference (``losses.targets.valid_mask``) becomes a ``(B, 1, S)`` uint8 mask.
    """
    if target is None:
        return None, None, None
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    target = _plain(target)
    if target.dtype == torch.bool:
        target = target.to(torch.uint8)
    n_ch = logits.shape[1]
    if target.shape[1] == 1:
        ign = None
        if ignore_index is not None:
            ign = float(ignore_index) if target.is_floating_point() else int(ignore_index)
        return target.contiguous(), None, ign
    valid = None
    if ignore_index is not None:
        if 0 <= ignore_index < n_ch:
            valid = target[:, ignore_index : ignore_index + 1] == 0
        else:
            valid = (target != 0).any(dim=1, keepdim=True)
    if activation == "softmax":
        label = target.argmax(dim=1, keepdim=True).to(torch.int32)
        if valid is None:
            return label.contiguous(), None, None
        return torch.where(valid, label, -1).contiguous(), None, -1
    return target.contiguous(), None if valid is None else valid.to(torch.uint8).contiguous(), None


def fused_sum_count(
    logits: torch.Tensor,
    target: torch.Tensor | None,
    activation: str = "softmax",
    ignore_index: int | None = None,
    kind: str = "meep_kl",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused ``(total, count)``: a drop-in for ``monai_meep.losses.functional._reference_sum_count``.

    Args:
        logits: ``(B, C, *spatial)`` logits, float32 / bfloat16 / float16 / float64, on CUDA (or on the CPU under
            ``TRITON_INTERPRET=1``).
        target: index map ``(B, 1, *)`` / ``(B, *)`` or one-hot / multi-label ``(B, C, *)``; None only for
            ``kind="confidence_penalty"``.
        activation: ``"softmax"`` or ``"sigmoid"``.
        ignore_index: label never counted (MONAI's one-hot convention for ``(B, C, *)`` targets).
        kind: ``"meep_kl"``, ``"meep_entropy"`` or ``"confidence_penalty"``.

    Returns:
        ``total`` (float32, float64 for float64 logits; carries the gradient) and ``count`` (int64, no gradient).

    Raises:
        TypeError: ``kind`` / ``activation`` not a string.
        ValueError: unknown ``kind`` / ``activation``, a one-channel softmax, mismatched shapes, or no triton.
    """
    if not HAS_TRITON:
        raise ValueError("fused_sum_count needs triton (pip install triton); use monai_meep.losses.functional instead.")
    kind = look_up(kind, Regularizer, "kind", tuple(_KINDS))
    activation = look_up(activation, Activation, "activation")
    logits = _plain(logits)
    if logits.ndim < 3 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor (B, C, *spatial), got {logits.dtype} {tuple(logits.shape)}.")
    if activation == "softmax" and logits.shape[1] < 2:
        raise ValueError(f"softmax needs C >= 2 channels, got logits of shape {tuple(logits.shape)}.")
    if target is None and kind != "confidence_penalty":
        raise ValueError(f"kind={kind!r} needs a target.")
    if target is not None:
        t_shape = tuple(target.shape if target.ndim == logits.ndim else (target.shape[0], 1, *target.shape[1:]))
        if len(t_shape) != logits.ndim or t_shape[0] != logits.shape[0] or t_shape[2:] != tuple(logits.shape[2:]) \
                or t_shape[1] not in (1, logits.shape[1]):  # fmt: skip
            raise ValueError(
                f"target of shape {tuple(target.shape)} does not match logits of shape {tuple(logits.shape)}: "
                "expected (B, 1, *spatial), (B, *spatial) or (B, C, *spatial)."
            )
    if kind == "confidence_penalty" and (target is None or ignore_index is None):
        target, ignore_index = None, None  # every element counts: the target plays no role
    tgt, valid, ign = _split_target(logits, target, activation, ignore_index)
    if kind == "confidence_penalty" and tgt is not None and tgt.shape[1] > 1 and activation == "sigmoid":
        tgt = tgt[:, :1].contiguous()  # only the valid mask matters; keep the target tensor small
    return _FusedSumCount.apply(logits.contiguous(), tgt, valid, kind, activation, ign)


def fused_meep_regularizer(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: str = "meep_kl",
    activation: str = "softmax",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """MEEP regulariser (mean entropy or ``KL(u || p)`` over the misclassified set ``W``) in one fused pass.

    The same value and gradient as :func:`monai_meep.losses.meep_entropy` / :func:`~monai_meep.losses.meep_kl`;
    ``|W| = 0`` gives exactly 0 with a zero gradient.

    Args:
        logits: ``(B, C, *spatial)`` logits (CUDA; CPU only under ``TRITON_INTERPRET=1``).
        target: index map ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
        kind: ``"meep_entropy"`` (Eq. 1) or ``"meep_kl"`` (Eq. 2).
        activation: ``"softmax"`` (C >= 2) or ``"sigmoid"`` (per channel).
        ignore_index: label value excluded from ``W``.

    Returns:
        A scalar (float32, or float64 for float64 logits).

    Raises:
        ValueError: see :func:`fused_sum_count`.

    Example:
        >>> z = torch.randn(2, 3, 33, 17, device="cuda", requires_grad=True)  # doctest: +SKIP
        >>> y = torch.randint(0, 3, (2, 1, 33, 17), device="cuda")  # doctest: +SKIP
        >>> fused_meep_regularizer(z, y, kind="meep_kl").backward()  # doctest: +SKIP
    """
    kind = look_up(kind, Regularizer, "kind", (Regularizer.MEEP_ENTROPY, Regularizer.MEEP_KL))
    total, count = fused_sum_count(logits, target, activation, ignore_index, kind)
    return total / count.clamp(min=1).to(total.dtype)
