# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Neighbour-aware calibration loss (NACL; Murugesan et al., MICCAI 2023 / MedIA 2024) on MONAI's ``NACLLoss``.

MONAI 1.4+ ships ``monai.losses.NACLLoss``: ``CE + alpha * mean |tau - l|`` with ``tau`` the one-hot smoothed by a
mean (or Gaussian) filter. Its interface differs from the rest of this project, so :class:`IndexNACLLoss` adapts it
without rewriting it:

==========================  ================================================  =====================================
what                        MONAI ``NACLLoss``                                ``IndexNACLLoss``
==========================  ================================================  =====================================
target                      ``(B, *spatial)`` class indices, no channel dim   ``(B, 1, *spatial)``, ``(B, *spatial)``
                                                                              or one-hot ``(B, C, *spatial)``
``ignore_index``            not supported (a label ``>= classes`` fails in    supported (WMH label 2)
                            ``one_hot``)
``reduction``               always the mean                                   ``"mean"`` / ``"sum"`` / ``"none"``
filter, ``alpha``, distance MONAI's                                           MONAI's (``self.nacl.svls_layer``,
                                                                              ``.alpha``, ``.distance_type``)
==========================  ================================================  =====================================

With no ignored voxels and ``reduction="mean"`` the value is MONAI's exactly (the tests check it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import NACLLoss
from monai.utils import LossReduction

from monai_meep.losses._targets import IndexTargetLoss, one_hot_labels, reduce_voxels
from monai_meep.losses.functional import upcast

__all__ = ["IndexNACLLoss"]


class IndexNACLLoss(IndexTargetLoss):
    """MONAI's ``NACLLoss`` with this project's targets, ``ignore_index`` and ``reduction``.

    Per voxel ``i``: ``CE_i + alpha * (1/C) sum_k d(tau_ik, l_ik)`` with ``d`` the L1 (or squared) distance and
    ``tau = filter(onehot(y))`` from MONAI's own filter (``self.nacl.svls_layer``): a ``kernel_size``-wide mean
    filter by default, or MONAI's ``GaussianFilter(sigma)`` (whose width is set by ``sigma``, truncated at 4 sigma;
    MONAI ignores ``kernel_size`` there). The mean over voxels of that is MONAI's ``CE.mean() + alpha *
    |tau - l|.mean()``.

    **Borders**: MONAI's filters pad with zeros, so ``tau`` is smaller at an image border (the classes "fade out");
    this adapter keeps that. **Ignored voxels** get an all-zero one-hot, i.e. they are treated like the zero
    padding outside the image for their neighbours' ``tau``, and are left out of both terms.

    ``softmax = True`` declares the activation to :class:`~monai_meep.losses.MEEPLoss`.

    Args:
        classes: number of classes ``C`` (MONAI's argument; the input must have ``C`` channels).
        dim: spatial dims, 2 or 3 (MONAI's argument; fixes the filter).
        kernel_size: edge length of the mean filter. Defaults to 3.
        kernel_ops: ``"mean"`` or ``"gaussian"``. Defaults to ``"mean"``.
        distance_type: ``"l1"`` or ``"l2"``. Defaults to ``"l1"``.
        alpha: weight of the penalty. Defaults to 0.1.
        sigma: Gaussian sigma for ``kernel_ops="gaussian"``. Defaults to 1.
        ignore_index: label left out of the loss.
        reduction: ``"mean"`` (over labelled voxels), ``"sum"``, or ``"none"`` (``(B, 1, *spatial)``).

    Raises:
        ValueError: what MONAI's ``NACLLoss`` raises (``kernel_ops``, ``dim``, ``distance_type``), an unknown
            ``reduction``; at call time an input whose channels or spatial dims differ from ``classes`` / ``dim``,
            a target that does not match the input, labels outside ``[0, C)``.
        TypeError: at call time, a non-tensor or non-floating input, a non-tensor target.

    Example:
        >>> loss = IndexNACLLoss(classes=2, dim=3, ignore_index=2)
        >>> loss(torch.randn(2, 2, 8, 8, 8), torch.randint(0, 3, (2, 1, 8, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        classes: int,
        dim: int,
        kernel_size: int = 3,
        kernel_ops: str = "mean",
        distance_type: str = "l1",
        alpha: float = 0.1,
        sigma: float = 1.0,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        self.nacl = NACLLoss(
            classes=classes,
            dim=dim,
            kernel_size=kernel_size,
            kernel_ops=kernel_ops,
            distance_type=distance_type,
            alpha=alpha,
            sigma=sigma,
        )
        self.classes, self.dim, self.kernel_size, self.kernel_ops = classes, dim, kernel_size, kernel_ops
        self.distance_type, self.alpha, self.sigma = distance_type, alpha, sigma

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if input.shape[1] != self.nacl.nc or input.ndim - 2 != self.nacl.dim:
            raise ValueError(
                f"input of shape {tuple(input.shape)} does not match IndexNACLLoss(classes={self.nacl.nc}, "
                f"dim={self.nacl.dim})."
            )
        logits = upcast(input)
        with torch.no_grad():  # the target carries no gradient; MONAI's filter follows the input's dtype
            tau = self.nacl.svls_layer(one_hot_labels(labels, valid, self.nacl.nc, logits.dtype))
        diff = tau - logits
        dist = diff.abs() if self.nacl.distance_type == "l1" else diff.pow(2)
        per_voxel = F.cross_entropy(logits, labels, reduction="none") + self.nacl.alpha * dist.mean(1)
        return reduce_voxels(per_voxel, valid, self.reduction)
