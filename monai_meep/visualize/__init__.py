# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Figures of calibration: reliability diagrams and probability histograms (matplotlib, optional, off-screen)."""

from __future__ import annotations

from .histogram import plot_probability_histogram
from .reliability import ReliabilityData, as_reliability_data, plot_reliability_diagram, save_figure

__all__ = [
    "ReliabilityData",
    "as_reliability_data",
    "plot_probability_histogram",
    "plot_reliability_diagram",
    "save_figure",
]
