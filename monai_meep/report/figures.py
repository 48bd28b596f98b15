# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The report's figures, from pooled histograms: reliability diagrams (10 bins, as the paper's figures) and
probability histograms, one per reported class and one of the top-label confidence (all classes pooled), drawn by
:mod:`monai_meep.visualize` and returned as PNG bytes (written to files and inlined in ``report.html``)."""

from __future__ import annotations

import io
from collections.abc import Mapping

from monai_meep.metrics import CalibrationHistogram, calibration_error_from_histogram, reliability_curve_from_histogram
from monai_meep.metrics.conventions import CalibrationConvention
from monai_meep.visualize import as_reliability_data, plot_probability_histogram, plot_reliability_diagram

__all__ = ["FIGURE_BINS", "report_figures"]

FIGURE_BINS = 10  # the paper's reliability diagrams and histograms


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _panels(hists: Mapping[str, CalibrationHistogram], conv: CalibrationConvention, row: int | None):
    """Per model: the reliability data of class ``row`` (``None``: top label) and the convention's ECE of it."""
    mode = "top_label" if row is None else "marginal"
    curves, eces = {}, {}
    for name, h in hists.items():
        curve = reliability_curve_from_histogram(h, FIGURE_BINS, mode=mode, include_background=True)
        curves[name] = as_reliability_data(curve, row)
        ece = calibration_error_from_histogram(h, conv.num_bins, "l1", mode, include_background=True)
        eces[name] = float(ece if row is None else ece[row])
    return curves, eces


def report_figures(hists: Mapping[str, CalibrationHistogram], conv: CalibrationConvention) -> dict[str, bytes]:
    """``{file name: PNG}`` of the pooled reliability diagrams and probability histograms.

    Args:
        hists: ``{model name: pooled histogram}``; several models are drawn side by side in each figure.
        conv: the convention (its ECE, bins and background rule title the panels).

    Returns:
        ``reliability_class{c}.png`` / ``probability_histogram_class{c}.png`` per reported class (class 0 too when
        the convention includes the background), and ``reliability_top_label.png`` /
        ``probability_histogram_top_label.png``.
    """
    first = next(iter(hists.values()))
    start = 0 if conv.include_background and conv.mode == "marginal" else 1
    out: dict[str, bytes] = {}
    single = len(hists) == 1
    for row in [*range(start, first.num_classes), None]:
        tag = "top_label" if row is None else f"class{row}"
        what = "top-label confidence" if row is None else f"class {row}"
        curves, eces = _panels(hists, conv, row)
        if single:
            curves, eces = next(iter(curves.values())), next(iter(eces.values()))
        fig = plot_reliability_diagram(
            curves, ece=eces, title=f"Reliability, {what} (pooled; ECE: {conv.num_bins} bins, scored region)"
        )
        out[f"reliability_{tag}.png"] = _png(fig)
        fig = plot_probability_histogram(curves, title=f"Predicted probabilities, {what} (pooled, scored region)")
        out[f"probability_histogram_{tag}.png"] = _png(fig)
    return out
