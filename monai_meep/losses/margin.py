# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Margin-based label smoothing (MbLS; Liu et al., CVPR 2022, arXiv:2111.15430; for segmentation Murugesan et al.).

Cross-entropy plus a hinge on the logit distances: ``CE + alpha * relu(max_j l_j - l_k - m)`` per class ``k``,
which lets each voxel's logits differ by at most ``m`` before the penalty starts (label smoothing instead pulls
them towards equal, whatever the margin). MONAI has no MbLS loss, so this is written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, StrEnum, look_up_option

from monai_meep.losses._targets import IndexTargetLoss, reduce_voxels
from monai_meep.losses.functional import upcast

__all__ = ["MarginClassReduction", "MbLSLoss"]


class MarginClassReduction(StrEnum):
    """How :class:`MbLSLoss` pools the margin penalty over the classes of a voxel.

    - ``"mean"``: ``(1/C) sum_k`` -- the authors' public code (``LogitMarginL1``), with which ``m`` and ``alpha``
      were tuned;
    - ``"sum"``: ``sum_k`` -- the equation as printed in the paper (``"mean"`` times ``C``).
    """

    MEAN = "mean"
    SUM = "sum"


class MbLSLoss(IndexTargetLoss):
    """Margin-based label smoothing: ``CE + alpha * pool_k relu(max_j l_j - l_k - margin)`` per voxel.

    ``pool_k`` is the mean over classes by default (``class_reduction="mean"``), as the authors' code: the paper's
    defaults ``margin = 10`` and ``alpha = 0.1`` were selected with that code, so the mean reproduces the published
    setting; ``class_reduction="sum"`` gives the printed equation (a penalty ``C`` times larger). The arg-max class
    has a distance of 0 and never contributes. The penalty is computed on the logits in at least float32; the
    ``max`` passes its gradient to the arg-max logit.

    ``softmax = True`` declares the activation to :class:`~monai_meep.losses.MEEPLoss`.

    Args:
        margin: ``m >= 0``, the tolerated logit distance. Defaults to 10.
        alpha: ``lambda >= 0``, the weight of the penalty. Defaults to 0.1.
        class_reduction: ``"mean"`` or ``"sum"`` over classes (:class:`MarginClassReduction`).
        ignore_index: label left out of both terms (the authors' code drops those voxels before both).
        reduction: ``"mean"`` (over labelled voxels), ``"sum"``, or ``"none"`` (``(B, 1, *spatial)``).

    Raises:
        ValueError: a negative ``margin`` or ``alpha``, an unknown ``class_reduction`` / ``reduction``; at call time a
            target that does not match the input or labels outside ``[0, C)``.
        TypeError: at call time, a non-tensor or non-floating input, a non-tensor target.

    Example:
        >>> loss = MbLSLoss(margin=10.0, alpha=0.1)
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        margin: float = 10.0,
        alpha: float = 0.1,
        class_reduction: MarginClassReduction | str = MarginClassReduction.MEAN,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        if not float(margin) >= 0 or not float(alpha) >= 0:
            raise ValueError(f"margin and alpha must be >= 0, got margin={margin!r}, alpha={alpha!r}.")
        self.margin = float(margin)
        self.alpha = float(alpha)
        self.class_reduction = look_up_option(class_reduction, MarginClassReduction).value

    def penalty(self, input: torch.Tensor) -> torch.Tensor:
        """The per-voxel margin penalty ``pool_k relu(max_j l_j - l_k - margin)``, shape ``(B, *spatial)``."""
        logits = upcast(input)
        dist = logits.max(dim=1, keepdim=True).values - logits
        hinge = F.relu(dist - self.margin)
        return hinge.mean(1) if self.class_reduction == MarginClassReduction.MEAN else hinge.sum(1)

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        pen = self.penalty(input)
        ce = F.cross_entropy(input.to(pen.dtype), labels, reduction="none")
        return reduce_voxels(ce + self.alpha * pen, valid, self.reduction)
