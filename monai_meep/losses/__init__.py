# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""MEEP losses: entropy / KL-to-uniform on misclassified voxels, around any MONAI segmentation loss."""

from __future__ import annotations

from monai_meep.losses.factory import PAPER_LAMBDA, build_loss, paper_lambda
from monai_meep.losses.functional import mean_entropy, meep_entropy, meep_kl, use_fused_kernel
from monai_meep.losses.meep import ConfidencePenaltyLoss, MEEPLoss

__all__ = [
    "PAPER_LAMBDA",
    "ConfidencePenaltyLoss",
    "MEEPLoss",
    "build_loss",
    "mean_entropy",
    "meep_entropy",
    "meep_kl",
    "paper_lambda",
    "use_fused_kernel",
]
