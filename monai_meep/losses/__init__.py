# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""MEEP losses: entropy / KL-to-uniform on misclassified voxels, around any MONAI segmentation loss."""

from __future__ import annotations

from monai_meep.losses.functional import mean_entropy, meep_entropy, meep_kl
from monai_meep.losses.meep import ConfidencePenaltyLoss, MEEPLoss

__all__ = ["ConfidencePenaltyLoss", "MEEPLoss", "mean_entropy", "meep_entropy", "meep_kl"]
