# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Focal loss with sample-dependent gamma (FLSD-53; Mukhoti et al., NeurIPS 2020, arXiv:2002.09437).

``-(1 - p_y)^gamma log p_y`` with ``gamma = 5`` where the true-class probability ``p_y < 0.2`` and ``gamma = 3``
elsewhere: a larger gamma on the hard voxels. MONAI's ``FocalLoss`` takes one scalar gamma (and its softmax
``"mean"`` divides by the channels as well), so the per-voxel form is written here.
"""

from __future__ import annotations

import torch
from monai.utils import LossReduction

from monai_meep.losses._targets import IndexTargetLoss, reduce_voxels
from monai_meep.losses.functional import upcast

__all__ = ["FLSDLoss"]


class FLSDLoss(IndexTargetLoss):
    """FLSD-53: softmax focal loss with ``gamma = gamma_low`` where ``p_y < threshold``, else ``gamma_high``.

    Per voxel ``-(1 - p_y)^gamma * log p_y`` with ``p_y`` the softmax probability of the true class. Gamma is chosen
    from ``p_y`` without gradient (as the authors' code, which reads ``p_y`` as a Python number), so the loss is
    piecewise the ordinary focal loss and differentiable away from ``p_y = threshold``. The authors' schedule also
    has a third band (``p_y >= 0.5``) whose gamma equals ``gamma_high`` for FLSD-53, so two values suffice.

    With every ``p_y >= threshold`` this is the focal loss with gamma 3; relative to MONAI's
    ``FocalLoss(to_onehot_y=True, use_softmax=True, gamma=3)`` with ``reduction="mean"`` it is ``C`` times larger,
    because MONAI's mean runs over the channels as well as the voxels.

    ``softmax = True`` declares the activation to :class:`~monai_meep.losses.MEEPLoss`.

    Args:
        gamma_low: gamma where ``p_y < threshold``. Defaults to 5.
        gamma_high: gamma elsewhere. Defaults to 3.
        threshold: the switch in ``p_y``. Defaults to 0.2.
        ignore_index: label left out of the loss.
        reduction: ``"mean"`` (over labelled voxels), ``"sum"``, or ``"none"`` (``(B, 1, *spatial)``).

    Raises:
        ValueError: a negative gamma, a threshold outside ``[0, 1]``, an unknown ``reduction``; at call time a target
            that does not match the input or labels outside ``[0, C)``.
        TypeError: at call time, a non-tensor or non-floating input, a non-tensor target.

    Example:
        >>> loss = FLSDLoss()
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        gamma_low: float = 5.0,
        gamma_high: float = 3.0,
        threshold: float = 0.2,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        if not float(gamma_low) >= 0 or not float(gamma_high) >= 0:
            raise ValueError(f"gammas must be >= 0, got gamma_low={gamma_low!r}, gamma_high={gamma_high!r}.")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
        self.gamma_low = float(gamma_low)
        self.gamma_high = float(gamma_high)
        self.threshold = float(threshold)

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        logp_y = torch.log_softmax(upcast(input), dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
        p_y = logp_y.exp()
        gamma = torch.where(p_y.detach() < self.threshold, self.gamma_low, self.gamma_high)
        # (1 - p_y) can round to a tiny negative; clamp so a non-integer gamma never yields NaN
        loss = -((1.0 - p_y).clamp_min(0.0) ** gamma) * logp_y
        return reduce_voxels(loss, valid, self.reduction)
