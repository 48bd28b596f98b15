# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Fused MEEP regulariser on the CPU: one compiled pass over the logits (Numba), the gradient included.

The same ``(total, count)`` as the PyTorch reference :func:`monai_meep.losses.functional.regulariser_sum_count`
(``_reference_sum_count``), with the same misclassified set (softmax: ``argmax_k z != y``, first maximum on ties;
sigmoid: ``(z > 0) != y`` per channel; ``ignore_index`` excluded; no gradient through the set) and the same values.
Why: the reference makes about a dozen passes over the logits with float32 temporaries (``log_softmax``, ``max``,
``where``, their backward); here the forward reads each logit once and writes four numbers per part and, when
autograd will ask for it, the gradient from the same exponentials; the backward only scales that buffer in place.
The label checks of the reference (finite logits; softmax index labels in ``[0, C)``, one-channel sigmoid labels in
``[0, 1]``) happen inside the same forward pass; when one fails, the reference's check runs to raise its message.

Maths in float32 (float16 / bfloat16 logits are read through a float32 copy, the gradient is returned in their
dtype). float64 logits -- what ``gradcheck`` uses -- stay on the reference, which is also the test oracle; so do
targets the reference alone handles (``kind="confidence_penalty"`` without a target).

Parallelism as the calibration histogram's (:mod:`.parts`): the voxels are split into parts by size only, run on
plain threads (``torch.get_num_threads()`` at most, the calling one included), and the parts' float64 partial sums
are added in a fixed order, so the value is the same bytes whatever the thread count.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import torch

from monai_meep.enums import Regularizer
from monai_meep.losses.targets import is_index_target, positive_labels, valid_mask
from monai_meep.utils import import_numba_kernels, numba_labels

from .parts import part_edges, run_parts

__all__ = [
    "HAS_NUMBA",
    "checks_in_pass",
    "cpu_kernel_enabled",
    "cpu_loss_plus_regulariser",
    "cpu_sum_count",
    "cpu_supports",
]

HAS_NUMBA = importlib.util.find_spec("numba") is not None
# the kernels' integer codes of the regulariser (the same as kernels.meep_fused)
_KINDS = {Regularizer.MEEP_ENTROPY: 0, Regularizer.MEEP_KL: 1, Regularizer.CONFIDENCE_PENALTY: 2}
# voxels per part at least: below this a part costs more to schedule than to compute
MIN_PART_VOXELS = 1 << 16
MAX_PARTS = 16
_DUMMY_VALID = np.ones((1, 1), np.uint8)


def cpu_kernel_enabled() -> bool:
    """Whether the CPU regulariser kernel is on: Numba installed and ``MONAI_MEEP_NUMBA`` not ``0`` (read at each
    call, so a test or a user can switch to the reference without re-importing)."""
    return HAS_NUMBA and os.environ.get("MONAI_MEEP_NUMBA", "1") != "0"


@functools.cache
def _kernels() -> ModuleType | None:
    """The kernel module, imported (with Numba) on first use; ``None``, with one warning, if Numba fails to import."""
    return import_numba_kernels(f"{__package__}._meep_cpu_kernels", "the MEEP regulariser uses the PyTorch path")


def cpu_supports(logits: torch.Tensor, target: torch.Tensor | None, kind: str) -> bool:
    """Whether :func:`cpu_sum_count` takes these inputs: CPU float32 / float16 / bfloat16 logits with a target,
    the kernel enabled and importable, and not inside ``torch.compile`` (which traces the reference instead and
    fuses it itself). Never raises."""
    return (
        cpu_kernel_enabled()
        and not torch.compiler.is_compiling()
        and isinstance(logits, torch.Tensor)
        and logits.device.type == "cpu"
        and logits.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and isinstance(target, torch.Tensor)
        and target.device.type == "cpu"
        and kind in _KINDS
        and _kernels() is not None
    )


def checks_in_pass(logits: torch.Tensor, target: torch.Tensor, activation: str) -> bool:
    """Whether the kernel's own pass checks these labels (softmax index maps, one-channel sigmoid targets), so the
    caller's separate check can be skipped; the logits are always checked in the pass."""
    return is_index_target(target) and (activation == "softmax" or logits.shape[1] == 1)


def _run_parts(fn: Callable[[int, int, int], None], n_voxels: int) -> int:
    """Call ``fn(part, lo, hi)`` for each part of ``range(n_voxels)`` (:func:`.parts.run_parts`); returns the number
    of parts."""
    parts = max(1, min(MAX_PARTS, n_voxels // MIN_PART_VOXELS))
    edges = part_edges(n_voxels, parts)
    run_parts(lambda k: fn(k, edges[k], edges[k + 1]), parts)
    return parts


class _Inputs:
    """The kernel's view of one call: NumPy arrays over contiguous float32 logits and uint8 / native label maps."""

    def __init__(
        self, logits: torch.Tensor, target: torch.Tensor, activation: str, ignore_index: int | None, kind: str
    ) -> None:
        b, c = logits.shape[:2]
        self.shape = (b, c, logits[0, 0].numel())
        z = logits.detach().float().contiguous().view(self.shape)
        self.z = z.numpy()
        self.kind = _KINDS[kind]
        self.softmax = activation == "softmax"
        self.ignore, self.has_ignore = (0, False) if ignore_index is None else (int(ignore_index), True)
        index = is_index_target(target)
        self.one_channel = False  # a one-channel sigmoid output read with its raw labels (sigmoid1_kernel)
        valid = None
        if self.softmax:
            if index:
                self.labels = numba_labels(target.reshape(b, -1)).contiguous().numpy()
            else:  # one-hot: the class is the argmax (first maximum), as the reference; validity from the channels
                self.labels = target.max(dim=1).indices.reshape(b, -1).contiguous().numpy()
                valid = valid_mask(target, c, ignore_index)
                self.has_ignore = False
        elif c == 1 and index:  # one sigmoid channel: the labels are read (and checked) as they are, in the pass
            self.labels = numba_labels(target.reshape(b, -1)).contiguous().numpy()
            self.one_channel = True
        else:
            positive = positive_labels(target, c)
            self.positive = positive.reshape(b, positive.shape[1], -1).view(torch.uint8).contiguous().numpy()
            valid = valid_mask(target, c, ignore_index)
        self.has_valid = valid is not None
        self.valid = _DUMMY_VALID if valid is None else valid.reshape(b, -1).view(torch.uint8).contiguous().numpy()

    def run(self, with_grad: bool) -> tuple[np.ndarray, torch.Tensor | None]:
        """One pass: ``[total, count, non-finite logits, bad labels]`` (the parts' values summed in part order) and,
        ``with_grad``, ``d total / d logits`` as a float32 ``(B, C, S)`` tensor."""
        kern = _kernels()
        if self.softmax:
            factory = kern.softmax2_kernel if self.shape[1] == 2 else kern.softmax_kernel
            kernel = factory(self.kind, self.has_ignore, self.has_valid, with_grad)
            args = (self.z, self.labels, self.valid, self.ignore)
        elif self.one_channel:
            kernel = kern.sigmoid1_kernel(self.kind, self.has_ignore, with_grad)
            args = (self.z, self.labels, self.ignore)
        else:
            per_channel = self.positive.shape[1] == self.shape[1]
            kernel = kern.sigmoid_kernel(self.kind, self.has_valid, per_channel, with_grad)
            args = (self.z, self.positive, self.valid)
        grad = np.empty(self.shape if with_grad else (1, 1, 1), np.float32)
        stats = np.zeros((MAX_PARTS, 4), np.float64)
        parts = _run_parts(lambda k, lo, hi: kernel(*args, lo, hi, stats[k], grad), self.shape[0] * self.shape[2])
        return stats[:parts].sum(0), torch.from_numpy(grad) if with_grad else None


def _total_count(stats: np.ndarray, on_invalid: Callable[[], None] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The pass's ``[total, count, non-finite logits, bad labels]`` as ``(total, count)`` tensors, after the check:
    with ``on_invalid`` a bad value raises (the reference's checks give their own message); without it a non-finite
    logit poisons the value, as it does on the reference path."""
    if on_invalid is not None and (stats[2] or stats[3]):
        on_invalid()
        raise ValueError(f"invalid MEEP input: {int(stats[2])} non-finite logit(s), {int(stats[3])} bad label(s).")
    total = torch.tensor(float("nan") if stats[2] else stats[0], dtype=torch.float32)
    return total, torch.tensor(int(stats[1]), dtype=torch.int64)


class _SumCount(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, inputs: _Inputs, on_invalid: Callable[[], None] | None):
        # the gradient is computed in the same pass when autograd will ask for it (saved, then scaled in backward)
        with_grad = ctx.needs_input_grad[0]
        stats, grad = inputs.run(with_grad)
        total, count = _total_count(stats, on_invalid)
        ctx.grad = grad
        ctx.shape, ctx.dtype = logits.shape, logits.dtype
        ctx.mark_non_differentiable(count)
        return total, count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_total: torch.Tensor, grad_count: torch.Tensor):
        grad, ctx.grad = ctx.grad, None  # scaled in place: the buffer is ours and used once
        grad = grad.mul_(grad_total).view(ctx.shape)
        return grad.to(ctx.dtype), None, None


def cpu_sum_count(
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: str = "softmax",
    ignore_index: int | None = None,
    kind: str = "meep_kl",
    on_invalid: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(total, count)`` of the regulariser over its selected set, as the reference, in one compiled pass.

    Args:
        logits: CPU ``(B, C, *spatial)`` float32 / float16 / bfloat16 logits (see :func:`cpu_supports`).
        target: index map ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``, already shaped by the caller
            (``monai_meep.losses.functional.check_shapes``).
        activation: ``"softmax"`` or ``"sigmoid"``.
        ignore_index: label value left out of the set.
        kind: ``"meep_kl"``, ``"meep_entropy"`` (misclassified set) or ``"confidence_penalty"`` (every scored element).
        on_invalid: called when the pass finds a non-finite logit or a bad label (:func:`checks_in_pass`: softmax
            index maps outside ``[0, C)``, one-channel sigmoid labels outside ``[0, 1]``); it should raise the
            caller's own error. ``None``: no check (a non-finite logit gives NaN).

    Returns:
        ``total``: float32 scalar with a gradient; ``count``: int64 scalar, elements in the set.

    Raises:
        ValueError: from ``on_invalid``, or for inputs :func:`cpu_supports` rejects.

    Example:
        >>> z, y = torch.randn(1, 2, 8, 8, 8), torch.randint(0, 2, (1, 1, 8, 8, 8))
        >>> total, count = cpu_sum_count(z, y, kind="meep_kl")
    """
    if not cpu_supports(logits, target, kind):
        raise ValueError(
            "cpu_sum_count needs CPU float32 / float16 / bfloat16 logits, a CPU target, a known kind and Numba; "
            f"got {logits.dtype} logits on {logits.device}, kind={kind!r}."
        )
    if logits.numel() == 0:
        zero = torch.zeros((), dtype=torch.float32) + 0.0 * logits.sum().float()
        return zero, torch.zeros((), dtype=torch.int64)
    inputs = _Inputs(logits, target, activation, ignore_index, kind)
    return _SumCount.apply(logits, inputs, on_invalid)


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class _LossPlusRegulariser(torch.autograd.Function):
    """``loss(logits) + weight * total / max(count, 1)`` as one autograd node (:func:`cpu_loss_plus_regulariser`)."""

    @staticmethod
    def forward(ctx: Any, logits, loss, loss_target, inputs: _Inputs, weight: float, on_invalid):
        stats, grad = inputs.run(True)
        total, count = _total_count(stats, on_invalid)
        # the wrapped loss on a detached alias (same storage and version counter) inside this node: its gradient is
        # taken in backward, and the regulariser's is added into it there, instead of autograd allocating and
        # summing two gradients the size of the logits
        with torch.enable_grad():
            alias = logits.detach().requires_grad_(True)
            seg = loss(alias, loss_target)
        if not isinstance(seg, torch.Tensor):
            raise TypeError(f"the wrapped loss must return a tensor, got {type(seg).__name__}.")
        # the same operations as the unfused path (loss_plus_regulariser), so the value is the same bytes
        reg = total / count.clamp(min=1).to(total.dtype)
        out = seg.detach() + weight * reg
        ctx.alias, ctx.seg, ctx.grad = alias, seg, grad
        ctx.scale = weight / max(int(count), 1)
        ctx.shape, ctx.dtype = logits.shape, logits.dtype
        seg_detached = seg.detach()
        ctx.mark_non_differentiable(seg_detached, total, count)
        return out, seg_detached, total, count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor, *unused: torch.Tensor):
        if ctx.seg is None:
            raise RuntimeError(
                "MEEPLoss's CPU kernel path runs its backward once (as autograd frees a graph after its first "
                "backward); for retain_graph=True set MONAI_MEEP_NUMBA=0."
            )
        alias, seg, buf = ctx.alias, ctx.seg, ctx.grad
        ctx.alias = ctx.seg = ctx.grad = None
        grad_seg = None
        if seg.requires_grad:
            (grad_seg,) = torch.autograd.grad(seg, alias, grad_out, allow_unused=True)
        # d out_i / d total = scale for every element of out (the regulariser is broadcast over a loss with
        # reduction="none")
        reg_scale = float(grad_out.sum()) * ctx.scale
        buf = buf.view(ctx.shape)
        if grad_seg is None:
            return buf.mul_(reg_scale).to(ctx.dtype), None, None, None, None, None
        # in place only into a dense float32 tensor of our own: not the incoming gradient or a view of it (a clone's
        # or a sum's backward), which autograd may hand to other nodes too
        if grad_seg.dtype == torch.float32 and grad_seg.is_contiguous() and not _shares_memory(grad_seg, grad_out):
            return grad_seg.add_(buf, alpha=reg_scale), None, None, None, None, None
        return (grad_seg + buf.mul_(reg_scale)).to(ctx.dtype), None, None, None, None, None


def cpu_loss_plus_regulariser(
    loss: Callable[[torch.Tensor, Any], torch.Tensor],
    logits: torch.Tensor,
    loss_target: Any,
    target: torch.Tensor,
    activation: str = "softmax",
    ignore_index: int | None = None,
    kind: str = "meep_kl",
    weight: float = 1.0,
    on_invalid: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``loss(logits, loss_target) + weight * total / max(count, 1)`` with one gradient into the logits.

    The regulariser's gradient comes out of the kernel's forward pass (as :func:`cpu_sum_count`); the backward takes
    the wrapped loss's gradient (``loss`` runs on a detached alias of ``logits`` inside the node) and adds the
    regulariser's into it in place. The unfused sum ``loss(...) + weight * total / count`` gives autograd two
    gradients the size of the logits to allocate, scale and add; this gives it one.

    Only for a wrapped loss without trainable parameters and a target without gradient (the caller checks:
    :func:`monai_meep.losses.functional.loss_plus_regulariser`); differentiable once.

    Args:
        loss: the wrapped segmentation loss, ``loss(logits, loss_target)``.
        logits: CPU ``(B, C, *spatial)`` float32 / float16 / bfloat16 logits (:func:`cpu_supports`).
        loss_target: the target as the wrapped loss takes it.
        target: the same target with a channel dim, for the kernel.
        activation: ``"softmax"`` or ``"sigmoid"``.
        ignore_index: label value left out of the set.
        kind: ``"meep_kl"`` or ``"meep_entropy"`` (or ``"confidence_penalty"``).
        weight: the regulariser's signed weight (MEEPLoss: ``+lambda`` for KL, ``-lambda`` for the entropy).
        on_invalid: as :func:`cpu_sum_count`.

    Returns:
        ``(out, seg, total, count)``: ``out`` with the gradient; the wrapped loss's value, the regulariser's sum
        over its set (float32) and the set's size (int64), detached.

    Raises:
        ValueError: from ``on_invalid``, or for inputs :func:`cpu_supports` rejects.
        TypeError: the wrapped loss returns something other than a tensor.

    Example:
        >>> from monai.losses import DiceLoss
        >>> z = torch.randn(1, 2, 8, 8, 8, requires_grad=True)
        >>> y = torch.randint(0, 2, (1, 1, 8, 8, 8))
        >>> out, seg, total, count = cpu_loss_plus_regulariser(DiceLoss(softmax=True, to_onehot_y=True), z, y, y)
        >>> out.backward()
    """
    if not cpu_supports(logits, target, kind) or logits.numel() == 0:
        raise ValueError(
            "cpu_loss_plus_regulariser needs non-empty CPU float32 / float16 / bfloat16 logits, a CPU target, a "
            f"known kind and Numba; got {logits.dtype} logits of shape {tuple(logits.shape)} on {logits.device}, "
            f"kind={kind!r}."
        )
    inputs = _Inputs(logits, target, activation, ignore_index, kind)
    return _LossPlusRegulariser.apply(logits, loss, loss_target, inputs, float(weight), on_invalid)
