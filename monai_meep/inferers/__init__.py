# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Evaluation-time uncertainty baselines as MONAI-style inferers: deep ensembles, MC dropout, flip TTA."""

from __future__ import annotations

from .accumulate import ProbabilityAccumulator, ProbabilityActivation, UncertaintyOutput
from .adapter import ProbabilityInferer
from .uncertainty import (
    DROPOUT_TYPES,
    EnsembleInferer,
    FlipTTAInferer,
    MCDropoutInferer,
    dropout_layers,
    mc_dropout_mode,
)

__all__ = [
    "DROPOUT_TYPES",
    "EnsembleInferer",
    "FlipTTAInferer",
    "MCDropoutInferer",
    "ProbabilityAccumulator",
    "ProbabilityActivation",
    "ProbabilityInferer",
    "UncertaintyOutput",
    "dropout_layers",
    "mc_dropout_mode",
]
