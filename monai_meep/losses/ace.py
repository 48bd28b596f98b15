# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Marginal L1 average calibration error as a loss (mL1-ACE; Barfoot et al., MICCAI 2024, arXiv:2403.06759).

Per image ``b`` and class ``c``, the softmax probabilities ``p_c`` of the voxels are put in ``M`` equal-width bins
of ``[0, 1]``; with ``P_m`` / ``Y_m`` the mean probability / mean one-hot label in bin ``m``,
``ACE_bc = (1 / |nonempty|) sum_{m nonempty} |P_m - Y_m|``. The loss is the mean of ``ACE_bc`` over images and
classes (``reduction="mean"``). Two bin assignments:

* **hard** (``binning="hard"``): voxel ``i`` is in the bin ``m`` with ``m/M < p_i <= (m+1)/M`` (``p = 0`` in bin 0;
  ``torch.bucketize``, as MONAI's ``calibration_binning``); the assignment carries no gradient, the bin means do.
  The value equals MONAI 1.6's ``CalibrationErrorMetric(calibration_reduction="average")`` on the same input.
* **soft** (``binning="soft"``): voxel ``i`` is shared between the two bin centres ``c_m = (m + 1/2)/M`` around
  ``p_i`` with linear ("tent") weights ``max(0, 1 - M |p_i - c_m|)``; below ``c_0`` / above ``c_{M-1}`` it is all in
  the edge bin. The weights sum to 1 per voxel and are differentiable in ``p``; bin means are weight-averaged and a
  bin with total weight below ``empty_weight`` counts as empty. This is the soft binning of the authors' public
  code, written here from its description.

MONAI has the hard-binned metric (float32, a Python loop over images and classes, no mask) but no loss; this module
is vectorised, follows the input's float64 for gradcheck and honours ``ignore_index``.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from monai.utils import LossReduction, StrEnum, look_up_option
from torch.nn.modules.loss import _Loss

from monai_meep.losses._targets import IndexTargetLoss, one_hot_labels, reduction_value
from monai_meep.losses.cross_entropy import IndexCrossEntropyLoss
from monai_meep.losses.functional import upcast

__all__ = ["ACEBinning", "DiceCEML1ACELoss", "ML1ACELoss", "marginal_l1_ace"]


class ACEBinning(StrEnum):
    """Bin assignment of :class:`ML1ACELoss`: ``"hard"`` (bucketize) or ``"soft"`` (linear between bin centres)."""

    HARD = "hard"
    SOFT = "soft"


def _bin_weights(prob: torch.Tensor, num_bins: int, binning: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin indices ``(..., 2)`` and weights ``(..., 2)`` of each probability (hard: one bin, weight 1 and 0)."""
    if binning == ACEBinning.HARD:
        edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=prob.dtype, device=prob.device)[1:-1]
        # (left, right]: an edge value goes to the lower bin; contiguous, or searchsorted copies with a warning
        idx = torch.bucketize(prob.detach().contiguous(), edges)
        ones = torch.ones_like(prob)
        return torch.stack((idx, idx), -1), torch.stack((ones, torch.zeros_like(prob)), -1)
    # position in units of bin centres: centre m sits at m; clamping puts the tails wholly in the edge bins
    pos = (prob * num_bins - 0.5).clamp(0.0, num_bins - 1.0)
    left = pos.detach().floor().clamp(max=max(num_bins - 2, 0)).long()
    frac = pos - left.to(pos.dtype)
    return torch.stack((left, (left + 1).clamp(max=num_bins - 1)), -1), torch.stack((1.0 - frac, frac), -1)


def marginal_l1_ace(
    prob: torch.Tensor,
    onehot: torch.Tensor,
    valid: torch.Tensor | None = None,
    num_bins: int = 20,
    binning: ACEBinning | str = ACEBinning.HARD,
    empty_weight: float = 0.01,
) -> torch.Tensor:
    """Per image and class L1 average calibration error ``(B, C)`` of probabilities against one-hot labels.

    Args:
        prob: probabilities ``(B, C, *spatial)``.
        onehot: labels of the same shape (0 / 1).
        valid: voxels to use, ``(B, *spatial)`` bool; all when None.
        num_bins: ``M >= 1`` equal-width bins of ``[0, 1]``.
        binning: ``"hard"`` or ``"soft"`` (module docstring).
        empty_weight: the total weight below which a bin is empty (soft binning; hard bins are empty at 0).

    Returns:
        ``ACE_bc``; an (image, class) without a non-empty bin (all voxels ignored) gives 0.

    Raises:
        ValueError: shapes that differ (both named), ``num_bins < 1``, an unknown ``binning``.

    Example:
        >>> p = torch.tensor([[[0.1, 0.9]], [[0.9, 0.1]]]).permute(1, 0, 2)  # (B=1, C=2, N=2)
        >>> marginal_l1_ace(p, (p > 0.5).float(), num_bins=10)
        tensor([[0.1000, 0.1000]])
    """
    kind = look_up_option(binning, ACEBinning)
    if prob.shape != onehot.shape or prob.ndim < 3:
        raise ValueError(
            f"prob {tuple(prob.shape)} and onehot {tuple(onehot.shape)} must have the same shape (B, C, *spatial)."
        )
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be an int >= 1, got {num_bins!r}.")
    p = prob.flatten(2)
    y = onehot.flatten(2).to(p.dtype)
    idx, w = _bin_weights(p, num_bins, kind)
    if valid is not None:
        w = w * valid.flatten(1)[:, None, :, None].to(w.dtype)
    idx, w = idx.flatten(2), w.flatten(2)  # the two candidate bins of every voxel side by side
    shape = (*p.shape[:2], num_bins)
    count = p.new_zeros(shape).scatter_add(2, idx, w)
    sum_p = p.new_zeros(shape).scatter_add(2, idx, w * p.repeat_interleave(2, dim=2))
    sum_y = p.new_zeros(shape).scatter_add(2, idx, w * y.repeat_interleave(2, dim=2))
    nonempty = count > 0 if kind == ACEBinning.HARD else count >= empty_weight
    gap = (sum_p - sum_y).abs() / torch.where(nonempty, count, torch.ones_like(count))
    gap = torch.where(nonempty, gap, torch.zeros_like(gap))
    return gap.sum(2) / nonempty.sum(2).clamp_min(1).to(gap.dtype)


class ML1ACELoss(IndexTargetLoss):
    """Marginal L1 average calibration error of ``softmax(input)`` as a loss term (Barfoot et al., MICCAI 2024).

    See :func:`marginal_l1_ace` and the module docstring for the binning. Usually added to a segmentation loss:
    :class:`DiceCEML1ACELoss` is the paper's Dice + CE + mL1-ACE.

    ``softmax = True`` declares the activation to :class:`~monai_meep.losses.MEEPLoss`.

    Args:
        num_bins: equal-width bins. Defaults to 20 (the paper, and MONAI's ``CalibrationErrorMetric``).
        binning: ``"hard"`` or ``"soft"`` (:class:`ACEBinning`).
        include_background: if False, class 0 is left out.
        empty_weight: soft binning's empty-bin threshold. Defaults to 0.01.
        ignore_index: label whose voxels are left out of every bin.
        reduction: ``"mean"`` over (image, class), ``"sum"``, or ``"none"`` (``(B, C, 1, ...)``, as MONAI's
            ``DiceLoss``).

    Raises:
        ValueError: ``num_bins < 1``, an unknown ``binning`` / ``reduction``; at call time a target that does not
            match the input or labels outside ``[0, C)``.
        TypeError: at call time, a non-tensor or non-floating input, a non-tensor target.

    Example:
        >>> loss = ML1ACELoss(num_bins=20, binning="soft")
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_bins: int = 20,
        binning: ACEBinning | str = ACEBinning.HARD,
        include_background: bool = True,
        empty_weight: float = 0.01,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be an int >= 1, got {num_bins!r}.")
        self.num_bins = num_bins
        self.binning = look_up_option(binning, ACEBinning).value
        self.include_background = include_background
        self.empty_weight = float(empty_weight)

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        prob = torch.softmax(upcast(input), dim=1)
        onehot = one_hot_labels(labels, valid, input.shape[1], prob.dtype)
        if not self.include_background:
            prob, onehot = prob[:, 1:], onehot[:, 1:]
        ace = marginal_l1_ace(prob, onehot, valid, self.num_bins, self.binning, self.empty_weight)
        if self.reduction == LossReduction.NONE.value:
            return ace.reshape(*ace.shape, *([1] * (input.ndim - 2)))
        return ace.sum() if self.reduction == LossReduction.SUM.value else ace.mean()


class DiceCEML1ACELoss(_Loss):
    """Dice + CE + mL1-ACE, the training loss of Barfoot et al. (MICCAI 2024).

    ``lambda_dice * DiceLoss + lambda_ce * CE + lambda_ace * ML1ACELoss``, all on softmax logits and index targets.
    With ``ignore_index=None`` the first two terms are MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)``
    exactly; they are composed from MONAI's ``DiceLoss`` and :class:`~monai_meep.losses.IndexCrossEntropyLoss`
    because ``DiceCELoss`` has no ``ignore_index`` (WMH label 2). The parts of the last forward are kept, detached,
    in :attr:`parts` (``dice``, ``ce``, ``ace``).

    Args:
        include_background: Dice's (as MONAI's ``DiceLoss``).
        batch: Dice's (as MONAI's ``DiceLoss``).
        lambda_dice: weight of the Dice term (>= 0). Defaults to 1.
        lambda_ce: weight of the CE term (>= 0). Defaults to 1.
        lambda_ace: weight of the mL1-ACE term (>= 0). Defaults to 1 (the paper adds it unweighted).
        num_bins: mL1-ACE bins. Defaults to 20.
        binning: ``"hard"`` or ``"soft"``.
        ace_include_background: whether mL1-ACE scores class 0. Defaults to True.
        ignore_index: label left out of all three terms.
        reduction: ``"mean"`` or ``"sum"`` (applied to each term, as MONAI's ``DiceCELoss``).

    Raises:
        ValueError: a negative weight, a ``"none"`` reduction, bad mL1-ACE arguments; at call time what the terms
            raise.

    Example:
        >>> loss = DiceCEML1ACELoss(binning="hard")
        >>> loss(torch.randn(2, 2, 8, 8, 8), torch.randint(0, 2, (2, 1, 8, 8, 8))).shape
        torch.Size([])
    """

    softmax = True
    sigmoid = False

    def __init__(
        self,
        include_background: bool = True,
        batch: bool = False,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        lambda_ace: float = 1.0,
        num_bins: int = 20,
        binning: ACEBinning | str = ACEBinning.HARD,
        ace_include_background: bool = True,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=reduction_value(reduction))
        if self.reduction == LossReduction.NONE.value:
            raise ValueError("DiceCEML1ACELoss supports reduction 'mean' or 'sum' (its terms have different shapes).")
        if min(lambda_dice, lambda_ce, lambda_ace) < 0:
            raise ValueError(f"weights must be >= 0, got {lambda_dice=}, {lambda_ce=}, {lambda_ace=}.")
        self.include_background, self.batch = include_background, batch
        self.lambda_dice, self.lambda_ce, self.lambda_ace = float(lambda_dice), float(lambda_ce), float(lambda_ace)
        self.num_bins, self.binning, self.ace_include_background = num_bins, binning, ace_include_background
        self.ignore_index = ignore_index
        self.dice = DiceLoss(
            include_background=include_background,
            to_onehot_y=True,
            softmax=True,
            batch=batch,
            reduction=self.reduction,
            ignore_index=ignore_index,
        )
        self.cross_entropy = IndexCrossEntropyLoss(ignore_index=ignore_index, reduction=self.reduction)
        self.ace = ML1ACELoss(
            num_bins=num_bins,
            binning=binning,
            include_background=ace_include_background,
            ignore_index=ignore_index,
            reduction=self.reduction,
        )
        self.last_parts: dict[str, torch.Tensor] = {}

    @property
    def parts(self) -> dict[str, torch.Tensor]:
        """The unweighted terms of the last forward (detached 0-dim tensors): ``dice``, ``ce``, ``ace``."""
        return dict(self.last_parts)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, C, *spatial)``.
            target: index map ``(B, 1, *spatial)`` (MONAI's ``DiceLoss(to_onehot_y=True)`` form).

        Returns:
            the weighted sum of the three terms.
        """
        ace = self.ace(input, target)  # first: its checks name the shapes before MONAI's own errors
        dice = self.dice(input, target)
        ce = self.cross_entropy(input, target)
        self.last_parts = {"dice": dice.detach(), "ce": ce.detach(), "ace": ace.detach()}
        return self.lambda_dice * dice + self.lambda_ce * ce + self.lambda_ace * ace
