# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Cross-entropy on MONAI-style index targets, with ``ignore_index``: the CE base loss of the bundles and of
:class:`~monai_meep.losses.ace.DiceCEML1ACELoss`."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["IndexCrossEntropyLoss"]


class IndexCrossEntropyLoss(_Loss):
    """``torch.nn.functional.cross_entropy`` on ``(B, C, *)`` logits and ``(B, 1, *)`` index targets.

    MONAI has no stand-alone CE segmentation loss with ``ignore_index`` (``DiceCELoss`` does not support it), so this
    thin adapter squeezes the channel dimension of MONAI-style targets. ``softmax = True`` tells the MEEP wrapper the
    activation.
    """

    softmax = True

    def __init__(self, ignore_index: int | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.ignore_index = ignore_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == input.ndim:
            if target.shape[1] != 1:
                raise ValueError(
                    f"target must be an index map (B, 1, *spatial); got {tuple(target.shape)} for input "
                    f"{tuple(input.shape)}."
                )
            target = target[:, 0]
        if target.shape != input.shape[:1] + input.shape[2:]:
            raise ValueError(f"target shape {tuple(target.shape)} does not match input shape {tuple(input.shape)}.")
        ignore = -100 if self.ignore_index is None else int(self.ignore_index)
        loss = torch.nn.functional.cross_entropy(input.float(), target.long(), ignore_index=ignore, reduction="none")
        if self.reduction == "none":
            return loss
        valid = target != ignore
        if self.reduction == "sum":
            return loss[valid].sum()
        # mean over labelled voxels; an all-ignored batch gives 0 (not 0/0 = NaN)
        return loss[valid].sum() / valid.sum().clamp_min(1)
