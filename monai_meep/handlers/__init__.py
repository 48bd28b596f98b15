# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Ignite handlers: calibration metrics (ECE, Brier, Brier+, NLL), Hausdorff distance in mm, reliability diagrams,
crash-safe checkpoints."""

from __future__ import annotations

from .calibration import BrierScore, ExpectedCalibrationError, NegativeLogLikelihood
from .calibration_state import SharedCalibrationState
from .checkpoint import SafeCheckpointSaver, SafeDiskSaver
from .distance import HausdorffDistanceMM
from .metrics_saver import PreciseMetricsSaver
from .reliability import ReliabilityDiagramSaver

__all__ = [
    "BrierScore",
    "ExpectedCalibrationError",
    "NegativeLogLikelihood",
    "HausdorffDistanceMM",
    "SafeCheckpointSaver",
    "SafeDiskSaver",
    "PreciseMetricsSaver",
    "ReliabilityDiagramSaver",
    "SharedCalibrationState",
]
