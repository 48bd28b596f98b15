# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The MEEP regularisers as functions of logits: the maths, activation-aware, for any framework.

Definitions follow the paper (Larrazabal et al., MICCAI 2023, Eqs. 1-2; docs/losses.md):

* the misclassified set ``W``: softmax: voxels whose ``argmax_k z`` differs from the label; sigmoid: (channel, voxel)
  pairs whose ``z > 0`` (i.e. ``p > 0.5``) differs from the binary label. Voxels labelled ``ignore_index`` are never
  in ``W``. ``W`` is pooled over the whole batch and carries no gradient.
* ``H_W = (1/|W|) sum_{i in W} H(p_i)`` (Shannon entropy in nats; Bernoulli entropy per sigmoid channel);
* ``KL_W = (1/|W|) sum_{i in W} KL(u || p_i)`` with ``KL(u || p) = -log K - (1/K) sum_k log p_k`` (K = 2 per sigmoid
  channel);
* an empty ``W`` gives exactly 0 with a zero gradient.

Everything is computed from ``log_softmax`` / ``logsigmoid`` of the logits in (at least) float32, also when the
logits come in bf16 / fp16 under AMP. There are no data-dependent Python branches outside the optional value
checks (``validate=False`` removes them), so the functions trace under ``torch.compile(fullgraph=True)``.

All public functions go through :func:`regulariser_sum_count`, the single place where the fused kernels are
dispatched to (Numba on the CPU, :mod:`monai_meep.kernels.meep_cpu`; Triton for CUDA tensors when registered).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

from monai_meep.enums import Activation, Regularizer, look_up
from monai_meep.losses.targets import is_index_target, positive_labels, valid_mask

__all__ = [
    "KINDS",
    "check_activation",
    "check_shapes",
    "loss_plus_regulariser",
    "mean_entropy",
    "meep_entropy",
    "meep_kl",
    "regulariser_sum_count",
    "scored_count",
    "upcast",
    "use_fused_kernel",
]

#: the ``kind`` of :func:`regulariser_sum_count`: the two MEEP regularisers on the misclassified set, and the
#: confidence penalty's entropy over every (valid) element (Pereyra et al.)
KINDS = (Regularizer.MEEP_KL, Regularizer.MEEP_ENTROPY, Regularizer.CONFIDENCE_PENALTY)

# A fused implementation (e.g. monai_meep.kernels.meep_fused.fused_sum_count) may be registered here; called as
# ``fn(logits, target, activation, ignore_index, kind)`` with the logits in their own dtype and the target with a
# channel dim, it must return what ``_reference_sum_count`` returns. A plain module attribute, so that the dispatch
# is one ``if`` on static properties (device), never on tensor values.
_FUSED_SUM_COUNT: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None


def use_fused_kernel(enabled: bool = True) -> bool:
    """Route the regulariser of CUDA tensors through the fused Triton kernel (:mod:`monai_meep.kernels`).

    Opt-in, because the compiled kernel has so far been verified against the PyTorch reference only in Triton's CPU
    interpreter; the plain PyTorch path stays the default, the CPU path and the reference. Setting the environment
    variable ``MONAI_MEEP_FUSED=1`` before import does the same.

    Args:
        enabled: True to register the kernel, False to go back to the PyTorch path.

    Returns:
        whether the fused kernel is now in use (False when triton is not installed).

    Example:
        >>> use_fused_kernel(False)
        False
    """
    global _FUSED_SUM_COUNT
    if not enabled:
        _FUSED_SUM_COUNT = None
        return False
    from monai_meep.kernels import HAS_TRITON, fused_sum_count  # lazy: kernels sit below losses, import on demand

    _FUSED_SUM_COUNT = fused_sum_count if HAS_TRITON else None
    return _FUSED_SUM_COUNT is not None


def check_activation(activation: Activation | str) -> Activation:
    """``activation`` as an :class:`~monai_meep.enums.Activation` (``"softmax"`` / ``"sigmoid"``).

    Raises:
        TypeError: not a string.
        ValueError: an unknown name (MONAI's ``look_up_option`` message, which lists the valid ones).
    """
    return look_up(activation, Activation, "activation")


def check_shapes(logits: torch.Tensor, target: torch.Tensor | None, activation: str) -> torch.Tensor | None:
    """Check the static shapes; return the target with a channel dim (``(B, 1, *)`` or ``(B, C, *)``).

    A target without a channel dim (``(B, *spatial)``, the ``torch.nn.CrossEntropyLoss`` convention) gets one.
    """
    check_activation(activation)
    if not isinstance(logits, torch.Tensor) or logits.ndim < 3:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a tensor of shape (B, C, *spatial) with a spatial dim, got {shape}.")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating point tensor, got dtype {logits.dtype}.")
    n_ch = logits.shape[1]
    if activation == "softmax" and n_ch < 2:
        raise ValueError(
            f"softmax needs C >= 2 channels, got logits of shape {tuple(logits.shape)}; "
            "for a one-channel (binary) output use activation='sigmoid'."
        )
    if target is None:
        return None
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a tensor, got {type(target).__name__}.")
    given = tuple(target.shape)
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    same = target.ndim == logits.ndim and target.shape[0] == logits.shape[0] and target.shape[2:] == logits.shape[2:]
    if not same or target.shape[1] not in (1, n_ch):
        raise ValueError(
            f"target of shape {given} does not match logits of shape {tuple(logits.shape)}: expected an "
            f"index map (B, 1, *spatial) or (B, *spatial), or a one-hot (B, C, *spatial) with C = {n_ch}."
        )
    return target


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """The logits in float32 at least (float64 stays float64, for gradcheck): never reduced-precision maths under
    AMP. The rule of the MEEP regularisers and of the calibration-baseline losses."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _prepare(
    logits: torch.Tensor, target: torch.Tensor | None, activation: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`check_shapes` and :func:`upcast`: the reference path's inputs (also used by the kernel tests)."""
    return upcast(logits), check_shapes(logits, target, activation)


def _validate_values(
    logits: torch.Tensor, target: torch.Tensor | None, activation: str, ignore_index: int | None
) -> None:
    """Data-dependent checks (one host sync in the good case): finite logits, labels within range."""
    checks = [~torch.isfinite(logits).all()]
    n_ch = logits.shape[1]
    index = target is not None and is_index_target(target)
    # a one-channel sigmoid target is a (possibly soft) foreground probability in [0, 1]; otherwise class indices.
    binary = activation == "sigmoid" and n_ch == 1
    if index:
        labels = target if ignore_index is None else torch.where(target == ignore_index, 0, target)
        bad = (labels < 0) | (labels > 1) if binary else (labels < 0) | (labels >= n_ch)
        if labels.is_floating_point():
            # NaN compares False with every bound: refuse it explicitly (a NaN index label is not an integer either)
            bad = bad | torch.isnan(labels) if binary else bad | (labels != torch.round(labels))
        checks.append(bad.any())
    elif target is not None:
        checks.append(_bad_one_hot(target, activation, ignore_index).any())
    flags = torch.stack(checks).tolist()
    if flags[0]:
        n_bad = int((~torch.isfinite(logits)).sum())
        raise ValueError(
            f"logits contain {n_bad} non-finite value(s) (NaN or inf) in a tensor of shape {tuple(logits.shape)}."
        )
    if not index and target is not None and flags[1]:
        values = torch.unique(target).tolist()
        rule = "one 1 per voxel, 0 elsewhere" if activation == "softmax" else "values in [0, 1]"
        ignore = "" if ignore_index is None else f" (voxels ignored by ignore_index={ignore_index} excepted)"
        raise ValueError(
            f"one-hot target of shape {tuple(target.shape)} must hold {rule}{ignore} for {activation} logits of "
            f"shape {tuple(logits.shape)}, got values {values[:20]}{' ...' if len(values) > 20 else ''}; an "
            f"all-zero, NaN or non-0/1 voxel would be read as class 0 (argmax) or as background. For unlabelled "
            f"(all-zero) voxels pass a sentinel ignore_index (e.g. -1), MONAI's convention for skipping them."
        )
    if index and flags[1]:
        values = torch.unique(target).tolist()
        ignore = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        expected = "values in [0, 1]" if binary else f"integer labels in [0, {n_ch})"
        raise ValueError(
            f"target must hold {expected}{ignore} for {activation} logits of shape {tuple(logits.shape)}, "
            f"got values {values[:20]}{' ...' if len(values) > 20 else ''}."
        )


def _bad_one_hot(target: torch.Tensor, activation: str, ignore_index: int | None) -> torch.Tensor:
    """Boolean map of the voxels of a ``(B, C, *)`` target that is not a valid one-hot (softmax) / multi-hot
    (sigmoid) encoding; ignored voxels (``valid_mask``) never count.

    Softmax: every value 0 or 1 and exactly one 1 per voxel (an all-zero voxel would be read as class 0 by argmax,
    a 2 as another class). Sigmoid: every value a finite probability in [0, 1] (soft labels allowed).
    """
    t = target if target.is_floating_point() else target.to(torch.float32)
    if activation == "softmax":
        binary = (t == 0) | (t == 1)  # NaN fails both
        bad = ~binary.all(dim=1, keepdim=True) | (t.sum(dim=1, keepdim=True) != 1)
    else:
        bad = ~((t >= 0) & (t <= 1)).all(dim=1, keepdim=True)  # NaN fails both bounds
    valid = valid_mask(target, target.shape[1], ignore_index)
    return bad if valid is None else bad & valid


def _errors_and_scored(
    logits: torch.Tensor, target: torch.Tensor, activation: str, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Boolean misclassified mask (``(B, 1, *)`` softmax, ``(B, C, *)`` sigmoid) and the valid mask; no gradient."""
    n_ch = logits.shape[1]
    with torch.no_grad():
        valid = valid_mask(target, n_ch, ignore_index)
        if activation == "softmax":
            # max().indices is argmax (first maximal index on ties) but ~15x faster than argmax over dim 1 on CPU
            # (torch 2.13: 24 ms vs 400 ms for 2 x 2 x 64^3)
            pred = logits.max(dim=1, keepdim=True).indices
            # ignored voxels may hold out-of-range labels: they are compared, never used as an index.
            label = target if is_index_target(target) else target.max(dim=1, keepdim=True).indices
            wrong = pred != label
        else:
            # z > 0 is p > 0.5 without the rounding of sigmoid near 0.
            wrong = (logits > 0) != positive_labels(target, n_ch)
        if valid is not None:
            wrong = wrong & valid
    return wrong, valid


def _elementwise(logits: torch.Tensor, activation: str, kind: str) -> torch.Tensor:
    """Per-element regulariser: ``(B, 1, *)`` for softmax (per voxel), ``(B, C, *)`` for sigmoid (per channel)."""
    if activation == "softmax":
        logp = F.log_softmax(logits, dim=1)
        if kind == "meep_kl":
            n_ch = logits.shape[1]
            return -math.log(n_ch) - logp.mean(dim=1, keepdim=True)
        return -(logp.exp() * logp).sum(dim=1, keepdim=True)
    log_pos, log_neg = F.logsigmoid(logits), F.logsigmoid(-logits)
    if kind == "meep_kl":
        return -math.log(2.0) - 0.5 * (log_pos + log_neg)
    return -(log_pos.exp() * log_pos + log_neg.exp() * log_neg)


def _reference_sum_count(
    logits: torch.Tensor, target: torch.Tensor | None, activation: str, ignore_index: int | None, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    values = _elementwise(logits, activation, kind)
    if kind == "confidence_penalty":
        valid = None if target is None else valid_mask(target, logits.shape[1], ignore_index)
        if valid is None:
            # torch.full is a device-side fill: no host-to-device copy, no sync
            return values.sum(), torch.full((), values.numel(), dtype=torch.int64, device=values.device)
        selected = valid.expand_as(values)
    else:
        selected, _ = _errors_and_scored(logits, target, activation, ignore_index)
    # where (not a multiply): elements outside the set contribute an exact 0 and an exact 0 gradient.
    total = torch.where(selected, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total, selected.sum()


class _CPURoute:
    """The CPU kernel takes the inputs; ``on_invalid`` raises the reference's message when the kernel's pass finds a
    bad value (None: no check in the pass)."""

    def __init__(self, on_invalid: Callable[[], None] | None) -> None:
        self.on_invalid = on_invalid


def _cpu_kernel_route(
    logits: torch.Tensor,
    target: torch.Tensor | None,
    activation: str,
    ignore_index: int | None,
    kind: str,
    validate: bool,
) -> _CPURoute | None:
    """Whether the CPU kernel computes the regulariser of these (shape-checked) inputs; if so, the value checks the
    kernel's pass does not do itself have run (so a bad target raises before any work)."""
    if logits.is_cuda or target is None:
        return None
    from monai_meep.kernels.meep_cpu import checks_in_pass, cpu_supports  # lazy: kernels sit below losses

    if not cpu_supports(logits, target, kind):
        return None
    # the kernel checks the logits, softmax index maps and one-channel sigmoid labels in its own pass (and on a
    # failure the check here runs to raise its message); other targets are checked here first
    in_pass = checks_in_pass(logits, target, activation)
    if validate and not in_pass:
        _validate_values(logits, target, activation, ignore_index)
    check = functools.partial(_validate_values, logits, target, activation, ignore_index)
    return _CPURoute(check if validate and in_pass else None)


def regulariser_sum_count(
    logits: torch.Tensor,
    target: torch.Tensor | None,
    activation: str = "softmax",
    ignore_index: int | None = None,
    kind: str = "meep_kl",
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the per-element regulariser over the selected set and the size of that set.

    The one internal entry point every public function (and :class:`~monai_meep.losses.MEEPLoss`) calls; a fused
    kernel for CUDA tensors is dispatched to from here.

    Args:
        logits: ``(B, C, *spatial)`` network output before the activation, any float dtype.
        target: index map ``(B, 1, *spatial)`` / ``(B, *spatial)`` or one-hot ``(B, C, *spatial)``; may be None only
            for ``kind="confidence_penalty"``.
        activation: ``"softmax"`` (C >= 2 exclusive classes) or ``"sigmoid"`` (per channel).
        ignore_index: label value never counted (MONAI convention for one-hot targets).
        kind: a :class:`~monai_meep.enums.Regularizer`: ``"meep_kl"``, ``"meep_entropy"`` (on the misclassified
            set) or ``"confidence_penalty"`` (every valid element).
        validate: run the data-dependent checks (finite logits, label range). They cost one host sync; turn them
            off for speed or under ``torch.compile(fullgraph=True)``.

    Returns:
        ``(total, count)``: ``total`` a float scalar (float32, or float64 for float64 logits) carrying the gradient,
        ``count`` an int64 scalar without gradient: elements in the set (voxels for softmax, (channel, voxel) pairs
        for sigmoid).

    Raises:
        ValueError: on an unknown ``kind`` / ``activation``, mismatched shapes, a one-channel softmax, and (with
            ``validate``) non-finite logits or labels outside ``[0, C)`` other than ``ignore_index``.
    """
    kind = look_up(kind, Regularizer, "kind", KINDS)
    activation = check_activation(activation)
    if target is None and kind != "confidence_penalty":
        raise ValueError(f"kind={kind!r} needs a target to find the misclassified voxels.")
    target = check_shapes(logits, target, activation)
    route = _cpu_kernel_route(logits, target, activation, ignore_index, kind, validate)
    if route is not None:
        from monai_meep.kernels.meep_cpu import cpu_sum_count  # lazy: kernels sit below losses

        return cpu_sum_count(logits, target, activation, ignore_index, kind, on_invalid=route.on_invalid)
    if validate:
        _validate_values(logits, target, activation, ignore_index)
    if _FUSED_SUM_COUNT is not None and logits.is_cuda:
        # the fused kernel reads the logits in their own dtype (float32 maths inside): no upcast copy
        return _FUSED_SUM_COUNT(logits, target, activation, ignore_index, kind)
    return _reference_sum_count(upcast(logits), target, activation, ignore_index, kind)


def _has_trainable_parameters(loss: Callable) -> bool:
    return isinstance(loss, torch.nn.Module) and any(p.requires_grad for p in loss.parameters())


def loss_plus_regulariser(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: str = "softmax",
    ignore_index: int | None = None,
    kind: str = "meep_kl",
    weight: float = 1.0,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``loss(logits, target) + weight * total / max(count, 1)``, and its parts: what
    :class:`~monai_meep.losses.MEEPLoss` computes (with ``weight = -lambda`` for the entropy, which is maximised).

    The regulariser is computed first (its checks give clearer messages than a failure inside the wrapped loss).
    Where the CPU kernel takes the inputs and autograd records (logits that require a gradient, a wrapped loss
    without trainable parameters, a target without gradient), the sum is one autograd node whose backward adds the
    regulariser's gradient into the wrapped loss's in place
    (:func:`monai_meep.kernels.meep_cpu.cpu_loss_plus_regulariser`): the same value, and the same gradient to
    float32 rounding, as the sum of the two, without the second gradient tensor autograd would otherwise allocate and
    add. Differentiable once on that path, as the kernel is.

    Args:
        loss: the segmentation loss, ``loss(logits, target)``; it receives ``target`` unchanged.
        logits: ``(B, C, *spatial)`` logits.
        target: as ``loss`` takes it (``(B, 1, *)``, ``(B, C, *)`` or ``(B, *)``).
        activation: ``"softmax"`` or ``"sigmoid"``.
        ignore_index: label value never counted in the set.
        kind: ``"meep_kl"``, ``"meep_entropy"`` or ``"confidence_penalty"`` (see :func:`regulariser_sum_count`).
        weight: the regulariser's signed weight.
        validate: as :func:`regulariser_sum_count`.

    Returns:
        ``(out, seg, total, count)``: the loss with its gradient, the wrapped loss's value (with its gradient on
        the unfused path, detached on the fused one), the regulariser's sum over its set and the set's size.

    Raises:
        ValueError: as :func:`regulariser_sum_count`.

    Example:
        >>> from monai.losses import DiceLoss
        >>> z, y = torch.randn(2, 2, 8, 8, 8, requires_grad=True), torch.randint(0, 2, (2, 1, 8, 8, 8))
        >>> out, seg, total, count = loss_plus_regulariser(DiceLoss(softmax=True, to_onehot_y=True), z, y, weight=0.5)
        >>> out.backward()
    """
    kind = look_up(kind, Regularizer, "kind", KINDS)
    activation = check_activation(activation)
    shaped = check_shapes(logits, target, activation)
    fused = (
        torch.is_grad_enabled()
        and logits.requires_grad
        and logits.numel() > 0
        and not shaped.requires_grad
        and not _has_trainable_parameters(loss)
    )
    route = _cpu_kernel_route(logits, shaped, activation, ignore_index, kind, validate) if fused else None
    if route is not None:
        from monai_meep.kernels.meep_cpu import cpu_loss_plus_regulariser  # lazy: kernels sit below losses

        return cpu_loss_plus_regulariser(
            loss, logits, target, shaped, activation, ignore_index, kind, weight, route.on_invalid
        )
    total, count = regulariser_sum_count(logits, shaped, activation, ignore_index, kind, validate)
    seg = loss(logits, target)
    return seg + weight * _mean(total, count), seg, total, count


def _mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    # |W| = 0: total is an exact 0 (empty where-sum), so 0 / 1 = 0 with a zero gradient; no Python branch.
    return total / count.clamp(min=1).to(total.dtype)


def meep_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: str = "softmax",
    ignore_index: int | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """MEEP Eq. 1: mean entropy (nats) of the predictions on the misclassified set ``W``.

    Maximised during training: :class:`~monai_meep.losses.MEEPLoss` *subtracts* it.

    Args:
        logits: ``(B, C, *spatial)`` logits (2D or 3D, any float dtype; maths in float32 at least).
        target: index map ``(B, 1, *spatial)`` or ``(B, *spatial)``, or one-hot ``(B, C, *spatial)``.
        activation: ``"softmax"`` or ``"sigmoid"``.
        ignore_index: label value excluded from ``W`` (e.g. WMH label 2).
        validate: check for non-finite logits and out-of-range labels (one host sync).

    Returns:
        A scalar >= 0, exactly 0 (with a zero gradient) when nothing is misclassified.

    Raises:
        ValueError: see :func:`regulariser_sum_count`.

    Example:
        >>> logits = torch.zeros(1, 3, 4, 4)
        >>> target = torch.ones(1, 1, 4, 4, dtype=torch.long)  # every voxel wrong (argmax of a tie is 0)
        >>> round(float(meep_entropy(logits, target)), 4)  # log 3
        1.0986
    """
    return _mean(*regulariser_sum_count(logits, target, activation, ignore_index, "meep_entropy", validate))


def meep_kl(
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: str = "softmax",
    ignore_index: int | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """MEEP Eq. 2: mean ``KL(u || p)`` from the uniform distribution on the misclassified set ``W``.

    Minimised during training: :class:`~monai_meep.losses.MEEPLoss` *adds* it. The constant ``-log K`` is kept,
    so the value is a true KL divergence (>= 0, zero at uniform); it does not change the gradient.

    Args:
        logits: ``(B, C, *spatial)`` logits (2D or 3D, any float dtype; maths in float32 at least).
        target: index map ``(B, 1, *spatial)`` or ``(B, *spatial)``, or one-hot ``(B, C, *spatial)``.
        activation: ``"softmax"`` or ``"sigmoid"`` (K = 2 per channel).
        ignore_index: label value excluded from ``W``.
        validate: check for non-finite logits and out-of-range labels (one host sync).

    Returns:
        A scalar >= 0, exactly 0 (with a zero gradient) when nothing is misclassified.

    Raises:
        ValueError: see :func:`regulariser_sum_count`.

    Example:
        >>> logits = torch.tensor([[[2.0]], [[-2.0]]]).unsqueeze(0)  # (1, 2, 1, 1): predicts class 0
        >>> float(meep_kl(logits, torch.ones(1, 1, 1, 1, dtype=torch.long))) > 0
        True
    """
    return _mean(*regulariser_sum_count(logits, target, activation, ignore_index, "meep_kl", validate))


def mean_entropy(
    logits: torch.Tensor,
    activation: str = "softmax",
    target: torch.Tensor | None = None,
    ignore_index: int | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """Mean entropy over every voxel (softmax) or every (channel, voxel) pair (sigmoid): the confidence penalty.

    Pereyra et al. (2017), the all-voxel baseline of the MEEP paper; maximised during training
    (:class:`~monai_meep.losses.ConfidencePenaltyLoss` subtracts it).

    Args:
        logits: ``(B, C, *spatial)`` logits.
        activation: ``"softmax"`` or ``"sigmoid"``.
        target: optional; only used with ``ignore_index`` to leave ignored voxels out of the mean.
        ignore_index: label value excluded (needs ``target``).
        validate: check for non-finite logits (and label range when a target is given).

    Returns:
        A scalar in ``[0, log K]``.

    Raises:
        ValueError: see :func:`regulariser_sum_count`.

    Example:
        >>> round(float(mean_entropy(torch.zeros(2, 1, 3, 3), activation="sigmoid")), 4)  # log 2
        0.6931
    """
    if ignore_index is not None and target is None:
        raise ValueError("mean_entropy: ignore_index needs a target.")
    return _mean(*regulariser_sum_count(logits, target, activation, ignore_index, "confidence_penalty", validate))


def scored_count(logits: torch.Tensor, target: torch.Tensor, activation: str, ignore_index: int | None) -> torch.Tensor:
    """Number of scored elements (voxels for softmax, (channel, voxel) pairs for sigmoid), int64, no gradient."""
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    per_voxel = 1 if activation == "softmax" else logits.shape[1]
    with torch.no_grad():
        valid = valid_mask(target, logits.shape[1], ignore_index)
        if valid is None:
            return torch.full((), logits[:, :1].numel() * per_voxel, dtype=torch.int64, device=logits.device)
        return valid.sum() * per_voxel


if os.environ.get("MONAI_MEEP_FUSED", "0").strip().lower() in ("1", "true", "yes", "on"):
    use_fused_kernel(True)
