# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""MEEP and confidence-penalty wrappers around any MONAI (or torch) segmentation loss.

Thin ``_Loss`` modules: the wrapped loss receives the input and target exactly as the user passes them; the
regulariser comes from :mod:`monai_meep.losses.functional`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.loss import _Loss

from monai_meep.enums import Regularizer, look_up
from monai_meep.losses.activation import infer_activation
from monai_meep.losses.functional import (
    check_shapes,
    loss_plus_regulariser,
    regulariser_sum_count,
    scored_count,
)

__all__ = ["ConfidencePenaltyLoss", "MEEPLoss"]

#: the regularisers MEEPLoss takes
MEEP_REGULARIZERS = (Regularizer.MEEP_KL, Regularizer.MEEP_ENTROPY)

# wrapped losses whose ignore_index is reused when none is given
_IGNORE_SOURCES = ("dice", "generalized_dice", "focal", "cross_entropy")
_TORCH_DEFAULT_IGNORE = -100


def _read_ignore_index(loss: Callable) -> int | None:
    for module in (loss, *(getattr(loss, name, None) for name in _IGNORE_SOURCES)):
        value = getattr(module, "ignore_index", None)
        # -100 is torch's "not set" default (DiceCELoss always has it); with a one-hot target it would wrongly
        # drop all-zero voxels, so only a value the user chose is reused.
        if isinstance(value, int) and not isinstance(value, bool) and value != _TORCH_DEFAULT_IGNORE:
            return value
    return None


def _check_weight(weight: float) -> float:
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}.")
    return value


def _check_torch_ce_target(loss: Callable, input: torch.Tensor, target: torch.Tensor) -> None:
    # torch's CrossEntropyLoss takes class indices without a channel dim; (B, 1, *) fails deep inside torch with a
    # message about "spatial targets", so say plainly what to pass instead.
    if (
        isinstance(loss, nn.CrossEntropyLoss)
        and target.ndim == input.ndim
        and target.shape[1] == 1
        and input.shape[1] != 1
    ):
        raise ValueError(
            f"torch.nn.CrossEntropyLoss takes an index target of shape (B, *spatial), got target {tuple(target.shape)} "
            f"for input {tuple(input.shape)}: pass target[:, 0].long(), or wrap monai.losses.DiceCELoss / "
            "FocalLoss(to_onehot_y=True) which take (B, 1, *spatial)."
        )


def _check_batch(input: torch.Tensor) -> None:
    """Refuse a batch of size 0: the wrapped loss's mean over nothing is NaN (MONAI's ``DiceLoss``), which would
    reach the optimiser silently; the regulariser alone would be a well-defined 0."""
    if isinstance(input, torch.Tensor) and input.ndim >= 1 and input.shape[0] == 0:
        raise ValueError(f"input has batch size 0 (shape {tuple(input.shape)}); expected at least one image.")


class MEEPLoss(_Loss):
    """Maximum Entropy on Erroneous Predictions (Larrazabal et al., MICCAI 2023) around a segmentation loss.

    ``regularizer="meep_kl"``: ``loss(input, target) + weight * KL_W`` (Eq. 2, minimise the divergence from uniform);
    ``regularizer="meep_entropy"``: ``loss(input, target) - weight * H_W`` (Eq. 1, maximise the entropy), both on the
    misclassified voxels ``W`` only (see :mod:`monai_meep.losses.functional`).

    The wrapped loss receives ``input`` and ``target`` unchanged, so the target is whatever it takes: an index map
    ``(B, 1, *spatial)`` (MONAI with ``to_onehot_y=True``), a one-hot ``(B, C, *spatial)``, or ``(B, *spatial)``
    for ``torch.nn.CrossEntropyLoss``. Its reduction is the result's; the regulariser is one scalar pooled over the
    batch and added to it.

    After each forward the parts are kept, detached (no host sync), for logging: ``last_seg_loss``,
    ``last_regularizer`` (``KL_W`` or ``H_W``, >= 0) and ``last_error_fraction`` (``|W|`` over the scored voxels,
    or (channel, voxel) pairs for sigmoid); :attr:`parts` returns them as a dict.

    Args:
        loss: the segmentation loss, called as ``loss(input, target)`` on logits.
        regularizer: ``"meep_kl"`` or ``"meep_entropy"``.
        weight: lambda >= 0 (paper: WMH CE 0.3, WMH Dice 1.0, LA CE 0.1, LA Dice 0.5).
        activation: ``"softmax"`` or ``"sigmoid"``; read from ``loss`` when None, by
            :func:`~monai_meep.losses.activation.infer_activation` (``DiceLoss.softmax`` / ``.sigmoid``,
            ``MaskedDiceLoss.pre_sigmoid``, ``FocalLoss.use_softmax``, a known ``other_act``, the inner losses of
            ``DiceCELoss`` (its CE part: softmax), ``DiceFocalLoss``, ``GeneralizedDiceFocalLoss``, ``NACLLoss``,
            ``torch.nn.CrossEntropyLoss`` -> softmax, ``torch.nn.BCEWithLogitsLoss`` -> sigmoid, ...).
        ignore_index: label never counted in ``W``; when None, reused from ``loss`` (or its Dice / Focal / CE part;
            torch's unset default -100 is not reused: pass ``ignore_index=-100`` for torch-style ignored labels).
        validate: check for non-finite logits and out-of-range labels on each call (one host sync); turn off for
            speed or ``torch.compile(fullgraph=True)``.

    Raises:
        TypeError: ``loss`` not callable, ``regularizer`` / ``activation`` not a string.
        ValueError: unknown ``regularizer``, negative ``weight``, an activation that cannot be read from ``loss``;
            at call time, see :func:`~monai_meep.losses.functional.regulariser_sum_count`.

    Example:
        >>> from monai.losses import DiceLoss
        >>> loss = MEEPLoss(DiceLoss(to_onehot_y=True, softmax=True), regularizer="meep_kl", weight=0.5)
        >>> logits = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
        >>> target = torch.randint(0, 3, (2, 1, 8, 8, 8))
        >>> loss(logits, target).backward()
        >>> sorted(loss.parts)
        ['error_fraction', 'regularizer', 'seg_loss']
    """

    def __init__(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        regularizer: Regularizer | str = Regularizer.MEEP_KL,
        weight: float = 1.0,
        activation: str | None = None,
        ignore_index: int | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__(reduction=getattr(loss, "reduction", "mean"))
        if not callable(loss):
            raise TypeError(f"loss must be callable as loss(input, target), got {type(loss).__name__}.")
        self.loss = loss
        self.regularizer = look_up(regularizer, Regularizer, "regularizer", MEEP_REGULARIZERS)
        self.weight = _check_weight(weight)
        self.activation = infer_activation(loss, activation)
        self.ignore_index = ignore_index if ignore_index is not None else _read_ignore_index(loss)
        self.validate = validate
        self.last_seg_loss: torch.Tensor | None = None
        self.last_regularizer: torch.Tensor | None = None
        self.last_error_fraction: torch.Tensor | None = None

    @property
    def parts(self) -> dict[str, torch.Tensor]:
        """The parts of the last forward (detached 0-dim tensors): ``seg_loss``, ``regularizer``, ``error_fraction``."""
        if self.last_seg_loss is None:
            return {}
        return {
            "seg_loss": self.last_seg_loss,
            "regularizer": self.last_regularizer,
            "error_fraction": self.last_error_fraction,
        }

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, C, *spatial)``.
            target: as the wrapped loss takes it: ``(B, 1, *spatial)``, ``(B, C, *spatial)`` or ``(B, *spatial)``.

        Returns:
            ``loss(input, target) + weight * KL_W`` or ``loss(input, target) - weight * H_W``.
        """
        _check_batch(input)
        _check_torch_ce_target(self.loss, input, target)
        # KL_W is minimised, H_W maximised; on the CPU kernel path the sum is one autograd node (one gradient into
        # the logits instead of two for autograd to add: loss_plus_regulariser)
        signed = self.weight if self.regularizer == "meep_kl" else -self.weight
        out, seg, total, count = loss_plus_regulariser(
            self.loss, input, target, self.activation, self.ignore_index, self.regularizer, signed, self.validate
        )
        reg = total.detach() / count.clamp(min=1).to(total.dtype)
        self.last_seg_loss = seg.detach()
        self.last_regularizer = reg.detach()
        scored = scored_count(input, target, self.activation, self.ignore_index)
        self.last_error_fraction = count.to(reg.dtype) / scored.clamp(min=1).to(reg.dtype)
        return out


class ConfidencePenaltyLoss(_Loss):
    """Confidence penalty (Pereyra et al., 2017): ``loss(input, target) - weight * mean_i H(p_i)`` over all voxels.

    The baseline of the MEEP paper (``weight`` = beta = 0.2): it penalises confident predictions everywhere, where
    MEEP does so only on misclassified voxels. Sigmoid outputs average the Bernoulli entropy over (channel, voxel)
    pairs; ignored labels (e.g. WMH label 2) are averaged too, as the penalty reads no labels. The parts of the last
    forward are kept, detached: ``last_seg_loss``, ``last_regularizer`` (the mean entropy) and :attr:`parts`.

    Args:
        loss: the segmentation loss, called as ``loss(input, target)`` on logits.
        weight: beta >= 0.
        activation: ``"softmax"`` or ``"sigmoid"``; read from ``loss`` when None (as :class:`MEEPLoss`).
        validate: check for non-finite logits on each call (one host sync).

    Raises:
        ValueError: negative ``weight``, an activation that cannot be read from ``loss``; at call time, a target
            whose shape does not match the logits, non-finite logits.

    Example:
        >>> from monai.losses import DiceCELoss
        >>> loss = ConfidencePenaltyLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight=0.2)
        >>> value = loss(torch.randn(2, 2, 8, 8), torch.randint(0, 2, (2, 1, 8, 8)))
    """

    def __init__(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        weight: float = 0.2,
        activation: str | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__(reduction=getattr(loss, "reduction", "mean"))
        if not callable(loss):
            raise TypeError(f"loss must be callable as loss(input, target), got {type(loss).__name__}.")
        self.loss = loss
        self.weight = _check_weight(weight)
        self.activation = infer_activation(loss, activation)
        self.validate = validate
        self.last_seg_loss: torch.Tensor | None = None
        self.last_regularizer: torch.Tensor | None = None

    @property
    def parts(self) -> dict[str, torch.Tensor]:
        """The parts of the last forward (detached 0-dim tensors): ``seg_loss``, ``regularizer``."""
        if self.last_seg_loss is None:
            return {}
        return {"seg_loss": self.last_seg_loss, "regularizer": self.last_regularizer}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, C, *spatial)``.
            target: as the wrapped loss takes it.

        Returns:
            ``loss(input, target) - weight * mean entropy``.
        """
        _check_batch(input)
        _check_torch_ce_target(self.loss, input, target)
        # the penalty reads no labels: the target's shape is checked, its values are the wrapped loss's business
        # (so ignored labels such as WMH label 2 pass), and every voxel is averaged
        check_shapes(input, target, self.activation)
        total, count = regulariser_sum_count(input, None, self.activation, None, "confidence_penalty", self.validate)
        ent = total / count.clamp(min=1).to(total.dtype)
        seg = self.loss(input, target)
        self.last_seg_loss = seg.detach()
        self.last_regularizer = ent.detach()
        return seg - self.weight * ent
