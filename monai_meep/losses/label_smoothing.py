# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Label smoothing (LS, Szegedy et al. 2016; a calibration baseline in Mueller et al. 2019) for CE and Dice.

The smoothed target of a voxel with one-hot ``y`` over ``C`` classes is ``(1 - a) y + a / C`` (``a = 0.1`` unless
said). Two losses and one helper, because CE and Dice take the smoothing in different places:

* :class:`LabelSmoothingCELoss`: torch's ``cross_entropy(label_smoothing=a)`` (the same CE that MONAI's
  ``DiceCELoss(label_smoothing=a)`` uses for its CE part), with MONAI-style ``(B, 1, *spatial)`` targets and the
  ``ignore_index`` / ``reduction`` that ``DiceCELoss`` lacks;
* :class:`LabelSmoothingDiceLoss`: MONAI's ``DiceLoss`` fed the smoothed one-hot (MONAI has no option for it);
* :func:`smooth_one_hot`: the target itself, for any other loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.utils import LossReduction

from monai_meep.losses._targets import IndexTargetLoss, one_hot_labels, reduce_voxels
from monai_meep.losses.functional import upcast

__all__ = ["LabelSmoothingCELoss", "LabelSmoothingDiceLoss", "smooth_one_hot"]

DEFAULT_SMOOTHING = 0.1


def _check_smoothing(smoothing: float) -> float:
    value = float(smoothing)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing!r}.")
    return value


def smooth_one_hot(onehot: torch.Tensor, smoothing: float = DEFAULT_SMOOTHING) -> torch.Tensor:
    """``(1 - a) * y + a / C`` for a one-hot ``y`` of shape ``(B, C, *spatial)``.

    Voxels whose one-hot is all zero (ignored voxels, see :mod:`monai_meep.losses._targets`) stay all zero, so a
    loss that masks them keeps masking them.

    Args:
        onehot: one-hot target ``(B, C, *spatial)``, floating point.
        smoothing: ``a`` in ``[0, 1]``.

    Returns:
        the smoothed target, same shape and dtype; every labelled voxel sums to 1 over the channels.

    Raises:
        ValueError: ``smoothing`` outside ``[0, 1]`` or ``onehot`` without a channel dim.

    Example:
        >>> smooth_one_hot(torch.tensor([[[1.0], [0.0]]]), 0.1)[:, :, 0]
        tensor([[0.9500, 0.0500]])
    """
    a = _check_smoothing(smoothing)
    if not isinstance(onehot, torch.Tensor) or onehot.ndim < 2:
        raise ValueError("onehot must be a tensor of shape (B, C, *spatial).")
    labelled = onehot.sum(1, keepdim=True)  # 1 for a labelled voxel, 0 for an ignored one
    return (1.0 - a) * onehot + labelled * (a / onehot.shape[1])


class LabelSmoothingCELoss(IndexTargetLoss):
    """Cross-entropy against label-smoothed targets ``(1 - a) y + a / C``.

    A thin adapter of ``torch.nn.functional.cross_entropy(label_smoothing=a)``, which is exactly the CE part of
    MONAI's ``DiceCELoss(label_smoothing=a)``; this class exists because ``DiceCELoss`` cannot stand alone as a CE
    loss, has no ``ignore_index`` and no ``"none"`` reduction. ``softmax = True`` declares the activation to
    :class:`~monai_meep.losses.MEEPLoss`.

    Args:
        smoothing: ``a`` in ``[0, 1]`` (0 is plain cross-entropy). Defaults to 0.1.
        ignore_index: label left out of the loss (an index-map label, e.g. WMH label 2; see
            :mod:`monai_meep.losses._targets` for one-hot targets).
        reduction: ``"mean"`` (over labelled voxels), ``"sum"``, or ``"none"`` (``(B, 1, *spatial)``).

    Raises:
        ValueError: ``smoothing`` outside ``[0, 1]``, an unknown ``reduction``; at call time a target that does not
            match the input (both shapes named) or labels outside ``[0, C)``.
        TypeError: at call time, a non-tensor or non-floating input, a non-tensor target.

    Example:
        >>> loss = LabelSmoothingCELoss(smoothing=0.1)
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        smoothing: float = DEFAULT_SMOOTHING,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        self.smoothing = _check_smoothing(smoothing)

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(upcast(input), labels, reduction="none", label_smoothing=self.smoothing)
        return reduce_voxels(loss, valid, self.reduction)


class LabelSmoothingDiceLoss(IndexTargetLoss):
    """MONAI's soft ``DiceLoss`` (softmax) against label-smoothed one-hot targets ``(1 - a) y + a / C``.

    A wrapper rather than a re-implementation: the target is converted and smoothed here (:func:`smooth_one_hot`),
    and everything else -- the softmax, ``include_background``, ``batch``, the smoothing constants, the reduction
    and its ``"none"`` shape ``(B, C, 1, ...)`` -- is MONAI's ``DiceLoss``, kept as ``self.dice``. Ignored voxels get
    an all-zero target and are masked in the Dice sums by MONAI's sentinel rule (all-zero voxels), so they affect
    neither the intersection nor the denominator.

    Args:
        smoothing: ``a`` in ``[0, 1]`` (0 is MONAI's ``DiceLoss(to_onehot_y=True, softmax=True)``). Defaults to 0.1.
        include_background: as MONAI's ``DiceLoss``.
        batch: as MONAI's ``DiceLoss`` (pool the sums over the batch).
        smooth_nr: as MONAI's ``DiceLoss``.
        smooth_dr: as MONAI's ``DiceLoss``.
        ignore_index: label left out of the loss.
        reduction: as MONAI's ``DiceLoss`` (``"mean"``, ``"sum"``, ``"none"``).

    Raises:
        ValueError: ``smoothing`` outside ``[0, 1]``, an unknown ``reduction``; at call time a target that does not
            match the input or labels outside ``[0, C)``.
        TypeError: at call time, a non-tensor or non-floating input, a non-tensor target.

    Example:
        >>> loss = LabelSmoothingDiceLoss(smoothing=0.1, include_background=False, batch=True)
        >>> loss(torch.randn(2, 2, 8, 8, 8), torch.randint(0, 2, (2, 1, 8, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        smoothing: float = DEFAULT_SMOOTHING,
        include_background: bool = True,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        self.smoothing = _check_smoothing(smoothing)
        self.include_background = include_background
        self.batch = batch
        self.smooth_nr = smooth_nr
        self.smooth_dr = smooth_dr
        # -1 is a sentinel for MONAI's one-hot rule: it masks the all-zero (ignored) voxels of the smoothed target
        self.dice = DiceLoss(
            include_background=include_background,
            softmax=True,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            reduction=self.reduction,
            ignore_index=None if ignore_index is None else -1,
        )

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        onehot = one_hot_labels(labels, valid, input.shape[1], input.dtype)
        return self.dice(input, smooth_one_hot(onehot, self.smoothing))
