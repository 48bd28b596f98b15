# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""MEEP losses (entropy / KL-to-uniform on misclassified voxels, around any MONAI segmentation loss) and the field's
train-time calibration baselines (label smoothing, SVLS, MbLS, NACL, mL1-ACE, FLSD-53; docs/baselines.md).

The paper's losses by name (``build_loss``, ``paper_lambda``) are the application's:
:mod:`monai_meep.apps.loss_factory`."""

from __future__ import annotations

from monai_meep.losses.ace import ACEBinning, DiceCEML1ACELoss, ML1ACELoss, marginal_l1_ace
from monai_meep.losses.activation import infer_activation
from monai_meep.losses.cross_entropy import IndexCrossEntropyLoss
from monai_meep.losses.focal_adaptive import FLSDLoss
from monai_meep.losses.functional import mean_entropy, meep_entropy, meep_kl, use_fused_kernel
from monai_meep.losses.label_smoothing import LabelSmoothingCELoss, LabelSmoothingDiceLoss, smooth_one_hot
from monai_meep.losses.margin import MarginClassReduction, MbLSLoss
from monai_meep.losses.meep import ConfidencePenaltyLoss, MEEPLoss
from monai_meep.losses.nacl import IndexNACLLoss
from monai_meep.losses.svls import SVLSKernel, SVLSLoss, svls_kernel

__all__ = [
    "ACEBinning",
    "ConfidencePenaltyLoss",
    "DiceCEML1ACELoss",
    "FLSDLoss",
    "IndexCrossEntropyLoss",
    "IndexNACLLoss",
    "LabelSmoothingCELoss",
    "LabelSmoothingDiceLoss",
    "MEEPLoss",
    "ML1ACELoss",
    "MarginClassReduction",
    "MbLSLoss",
    "SVLSKernel",
    "SVLSLoss",
    "infer_activation",
    "marginal_l1_ace",
    "mean_entropy",
    "meep_entropy",
    "meep_kl",
    "smooth_one_hot",
    "svls_kernel",
    "use_fused_kernel",
]
