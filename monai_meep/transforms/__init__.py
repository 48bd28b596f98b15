# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Inference post-processing transforms: predictive entropy (uncertainty) and foreground-probability maps."""

from __future__ import annotations

from .uncertainty import ForegroundProbabilityd, PredictiveEntropyd, predictive_entropy

__all__ = ["ForegroundProbabilityd", "PredictiveEntropyd", "predictive_entropy"]
