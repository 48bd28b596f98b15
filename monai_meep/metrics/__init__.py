# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Exact, streaming, bounded-memory calibration metrics (and Hausdorff distance) in MONAI's metric style."""

from __future__ import annotations

from .calibration import (
    ReliabilityCurve,
    brier_score,
    brier_score_from_histogram,
    calibration_error,
    calibration_error_from_histogram,
    negative_log_likelihood,
    negative_log_likelihood_from_histogram,
    reliability_curve,
    reliability_curve_from_histogram,
)
from .calibration_metric import BrierScoreMetric, ExpectedCalibrationErrorMetric, NegativeLogLikelihoodMetric
from .calibration_state import (
    STATE_FILE,
    CalibrationState,
    load_calibration_state,
    save_calibration_state,
)
from .convention_metrics import CalibrationErrors, calibration_errors
from .conventions import (
    PRESETS,
    CalibrationConvention,
    CalibrationMode,
    Preset,
    Region,
    batch_region_mask,
    calibration_convention,
    probability_sum_tolerance,
    region_mask,
)
from .distance import HausdorffDistanceMMMetric, hausdorff_distance
from .histogram import DEFAULT_NUM_SUB_BINS, CalibrationHistogram

__all__ = [
    "DEFAULT_NUM_SUB_BINS",
    "BrierScoreMetric",
    "ExpectedCalibrationErrorMetric",
    "NegativeLogLikelihoodMetric",
    "CalibrationHistogram",
    "CalibrationState",
    "STATE_FILE",
    "load_calibration_state",
    "save_calibration_state",
    "ReliabilityCurve",
    "brier_score",
    "brier_score_from_histogram",
    "calibration_error",
    "calibration_error_from_histogram",
    "negative_log_likelihood",
    "negative_log_likelihood_from_histogram",
    "reliability_curve",
    "reliability_curve_from_histogram",
    # conventions of the field: regions, modes, presets, and the errors they give
    "PRESETS",
    "CalibrationConvention",
    "CalibrationErrors",
    "CalibrationMode",
    "Preset",
    "Region",
    "batch_region_mask",
    "calibration_convention",
    "calibration_errors",
    "probability_sum_tolerance",
    "region_mask",
    # Hausdorff distance
    "HausdorffDistanceMMMetric",
    "hausdorff_distance",
]
