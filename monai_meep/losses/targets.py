# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""How the MEEP regularisers read a target: index map or one-hot, the ignore mask, sigmoid positives.

Shared by the PyTorch reference (:mod:`monai_meep.losses.functional`) and the CPU kernel
(:mod:`monai_meep.kernels.meep_cpu`), which both import it, so neither imports the other for these rules. Every
target here already has a channel dim (``(B, 1, *)`` index map or ``(B, C, *)`` one-hot;
:func:`~monai_meep.losses.functional.check_shapes` adds it). Only torch is imported.
"""

from __future__ import annotations

import torch

__all__ = ["is_index_target", "positive_labels", "valid_mask"]


def is_index_target(target: torch.Tensor) -> bool:
    """Whether a target with a channel dim is an index map: one channel (for a one-channel sigmoid output, index
    map and one-hot coincide)."""
    return target.shape[1] == 1


def valid_mask(target: torch.Tensor, n_ch: int, ignore_index: int | None) -> torch.Tensor | None:
    """``(B, 1, *)`` bool, True where the voxel is scored, or None when nothing is ignored.

    MONAI's convention (``monai.metrics.utils.create_ignore_mask``): an index map is compared with ``ignore_index``;
    a one-hot target ignores voxels of channel ``ignore_index`` when it is a valid channel, and all-zero voxels when
    it is a sentinel (``< 0`` or ``>= C``).
    """
    if ignore_index is None:
        return None
    if is_index_target(target):
        return target != ignore_index
    if 0 <= ignore_index < n_ch:
        return target[:, ignore_index : ignore_index + 1] == 0
    return (target != 0).any(dim=1, keepdim=True)


def positive_labels(target: torch.Tensor, n_ch: int) -> torch.Tensor:
    """Sigmoid targets as booleans, ``(B, 1 or C, *)``: where each (channel, voxel) element's label is positive."""
    if is_index_target(target) and n_ch > 1:
        # index map for a multi-channel sigmoid (MONAI's to_onehot_y=True, sigmoid=True): channel c = "label c"
        classes = torch.arange(n_ch, device=target.device).view([1, n_ch] + [1] * (target.ndim - 2))
        return target == classes
    return target > 0.5 if target.is_floating_point() else target != 0
