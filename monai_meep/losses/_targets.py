# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Shared input handling of the calibration-baseline losses: logits and target checks, index labels with an
ignore mask, one-hot targets and the per-voxel reduction.

Every baseline loss (:mod:`~monai_meep.losses.label_smoothing`, :mod:`~monai_meep.losses.svls`, ...) takes softmax
logits ``(B, C, *spatial)`` and a target in one of MONAI's forms: an index map ``(B, 1, *spatial)``, an index map
without the channel dim ``(B, *spatial)`` (the torch ``CrossEntropyLoss`` convention) or a one-hot
``(B, C, *spatial)``. ``ignore_index`` follows MONAI 1.6's ``create_ignore_mask``: index maps drop the voxels with
that label (a label ``>= C``, such as WMH label 2 with two channels, is allowed there); one-hot targets drop the
voxels of channel ``ignore_index`` when that is a class, and all-zero voxels when it is a sentinel (``< 0`` or
``>= C``).
"""

from __future__ import annotations

import torch
from monai.metrics.utils import create_ignore_mask
from monai.utils import LossReduction, look_up_option
from torch.nn.modules.loss import _Loss

__all__ = [
    "IndexTargetLoss",
    "check_logits",
    "index_labels",
    "one_hot_labels",
    "reduce_voxels",
    "reduction_value",
]


def reduction_value(reduction: LossReduction | str) -> str:
    """``"mean"`` / ``"sum"`` / ``"none"`` read with MONAI's ``look_up_option`` (its message lists the options)."""
    return look_up_option(reduction, LossReduction).value


def check_logits(input: torch.Tensor) -> None:
    """Refuse anything but floating point logits ``(B, C, *spatial)`` with ``C >= 2`` (softmax) and a voxel."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor of logits, got {type(input).__name__}.")
    if not input.is_floating_point():
        raise TypeError(f"input must be floating point logits, got dtype {input.dtype}.")
    if input.ndim < 3 or input.shape[1] < 2:
        raise ValueError(
            f"input must be softmax logits of shape (B, C, *spatial) with C >= 2, got {tuple(input.shape)}."
        )
    if input.shape[0] == 0:
        # a mean over no image is NaN; better a clear error than a NaN reaching the optimiser
        raise ValueError(f"input has batch size 0 (shape {tuple(input.shape)}); expected at least one image.")


def index_labels(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class indices ``(B, *spatial)`` (long, ignored voxels set to 0) and the valid mask ``(B, *spatial)`` (bool).

    Raises:
        TypeError: ``target`` is not a tensor.
        ValueError: ``target`` does not match ``input`` (the message names both shapes), or holds a label outside
            ``[0, C)`` that is not ``ignore_index``.
    """
    check_logits(input)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}.")
    n_cls, given = input.shape[1], tuple(target.shape)
    if target.ndim == input.ndim - 1:
        target = target.unsqueeze(1)
    if target.ndim != input.ndim or target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]:
        raise ValueError(
            f"target of shape {given} does not match input of shape {tuple(input.shape)}: expected an index map "
            f"(B, 1, *spatial) or (B, *spatial), or a one-hot (B, C, *spatial) with C = {n_cls}."
        )
    if target.shape[1] == 1:
        labels = target[:, 0]
        valid = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
        if labels.is_floating_point() and bool(torch.any(valid & (labels != labels.round()))):
            raise ValueError(f"index target of shape {given} holds non-integer labels.")
        labels = torch.where(valid, labels, torch.zeros_like(labels)).long()
    elif target.shape[1] == n_cls:
        mask = create_ignore_mask(target, ignore_index)
        valid = torch.ones_like(target[:, 0], dtype=torch.bool) if mask is None else mask[:, 0] > 0
        labels = torch.where(valid, target.argmax(1), 0)
    else:
        raise ValueError(
            f"target of shape {given} does not match input of shape {tuple(input.shape)}: the channel dim must be "
            f"1 (index map) or C = {n_cls} (one-hot)."
        )
    # one host sync: an out-of-range label would otherwise fail deep inside one_hot / cross_entropy
    if bool(torch.any(valid & ((labels < 0) | (labels >= n_cls)))):
        raise ValueError(
            f"target holds labels outside [0, {n_cls}) for input of shape {tuple(input.shape)}; "
            f"set ignore_index for a label to leave out (got ignore_index={ignore_index})."
        )
    return labels, valid


def one_hot_labels(labels: torch.Tensor, valid: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot ``(B, C, *spatial)`` of ``labels`` with ignored voxels all zero (they count as "no class")."""
    onehot = torch.nn.functional.one_hot(labels, num_classes).movedim(-1, 1).to(dtype)
    # contiguous: MONAI's filters view() their input, which a moved channel dim does not allow
    return (onehot * valid.unsqueeze(1).to(dtype)).contiguous()


def reduce_voxels(loss: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a per-voxel loss ``(B, *spatial)`` over the valid voxels.

    ``"mean"``: the mean over valid voxels (an all-ignored batch gives 0, not 0/0); ``"sum"``: their sum;
    ``"none"``: ``(B, 1, *spatial)``, broadcastable with the target, ignored voxels 0.
    """
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == LossReduction.NONE.value:
        return loss.unsqueeze(1)
    if reduction == LossReduction.SUM.value:
        return loss.sum()
    return loss.sum() / valid.sum().clamp_min(1).to(loss.dtype)


class IndexTargetLoss(_Loss):
    """Base of the baseline losses: softmax logits, MONAI-style targets, ``ignore_index`` and ``reduction``.

    ``forward`` checks and converts the target once (:func:`index_labels`) and hands the class indices and the
    valid mask to ``_loss``, which subclasses implement. ``softmax = True`` / ``sigmoid = False`` declare the
    activation to :class:`~monai_meep.losses.MEEPLoss`, which reads them.
    """

    softmax = True
    sigmoid = False

    def __init__(self, ignore_index: int | None = None, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__(reduction=reduction_value(reduction))
        self.ignore_index = ignore_index

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, C, *spatial)``.
            target: index map ``(B, 1, *spatial)`` / ``(B, *spatial)`` or one-hot ``(B, C, *spatial)``.

        Returns:
            the loss, reduced as ``reduction`` says.
        """
        labels, valid = index_labels(input, target, self.ignore_index)
        return self._loss(input, labels, valid)
