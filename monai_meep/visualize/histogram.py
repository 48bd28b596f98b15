# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Probability histograms (paper Fig. 2, bottom): voxel counts per predicted-probability bin, several models side by
side or overlaid, on the off-screen figure helpers of :mod:`.reliability`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .reliability import (
    as_reliability_data,
    named_items,
    new_figure,
    save_figure,
    select_row,
    to_numpy,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_probability_histogram"]


def _histogram_counts(source: Any, class_index: int | None, num_bins: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of one model's probability histogram."""
    if hasattr(source, "num_sub_bins") and hasattr(source, "counts"):  # a CalibrationHistogram
        counts = to_numpy(source.counts).astype(np.int64)
        if counts.ndim == 2:
            if class_index is None and counts.shape[0] != 1:
                # A 2-class histogram is a binary task: the paper plots the foreground probability.
                class_index = 1 if counts.shape[0] == 2 else None
            counts = select_row(counts, class_index, "histogram counts")
        nb = num_bins or counts.shape[0]
        if counts.shape[0] % nb:
            raise ValueError(f"num_bins={nb} must divide the histogram's {counts.shape[0]} sub-bins.")
        return counts.reshape(nb, -1).sum(axis=1), np.linspace(0.0, 1.0, nb + 1)
    if isinstance(source, (np.ndarray, torch.Tensor)):  # raw probabilities of one class
        values = to_numpy(source).astype(np.float64).ravel()
        if values.size and (not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1):
            raise ValueError("probabilities must be finite and lie in [0, 1].")
        nb = num_bins or 10
        counts, edges = np.histogram(values, bins=nb, range=(0.0, 1.0))
        return counts.astype(np.int64), edges
    data = as_reliability_data(source, class_index)
    if num_bins is not None and num_bins != data.count.shape[0]:
        raise ValueError(f"num_bins={num_bins} differs from the curve's {data.count.shape[0]} bins.")
    if np.any(np.isnan(data.lower)) or np.any(data.lower[1:] != data.upper[:-1]):
        raise ValueError("a probability histogram needs contiguous bins (uniform binning), got gaps or empty edges.")
    return data.count, np.append(data.lower, data.upper[-1])


def plot_probability_histogram(
    sources: Any,
    class_index: int | None = None,
    num_bins: int | None = None,
    overlay: bool = False,
    title: str | None = None,
    save_path: str | os.PathLike | None = None,
    dpi: int = 100,
    panel_size: tuple[float, float] = (4.0, 3.0),
    ncols: int | None = None,
) -> Figure:
    """Histogram of predicted (foreground) probabilities with log-scale counts, as in the bottom row of paper Fig. 2.

    Args:
        sources: one source or ``{model name: source}`` / a list, where a source is a ``CalibrationHistogram``
            (its sub-bins are summed into ``num_bins``; a 2-class histogram plots class 1, the foreground),
            a reliability curve (its per-bin counts), or a tensor / array of probabilities (flattened).
        class_index: class row of a histogram or curve with one row per class.
        num_bins: number of equal-width bins over [0, 1]; default: the source's own bins (10 for raw values).
        overlay: draw all models on one axes as step lines instead of one panel per model.
        title: figure title (suptitle).
        save_path: when given, the PNG is written there (atomically).
        dpi: resolution of the saved PNG.
        panel_size: size of one panel in inches.
        ncols: panels per row (default: all in one row); further models wrap onto new rows.

    Returns:
        The matplotlib ``Figure``; in panel mode each axes holds one bar container labelled ``"Count"``.

    Raises:
        ValueError: for probabilities outside [0, 1], NaN, or a ``num_bins`` that does not divide the sub-bins.
        OptionalImportError: when matplotlib is not installed.

    Example:
        >>> fig = plot_probability_histogram({"Dice": hist_dice, "Dice+MEEP": hist_meep}, num_bins=10)
    """
    named = [(name, *_histogram_counts(s, class_index, num_bins)) for name, s in named_items(sources, "histograms")]
    fig, axes = new_figure(1 if overlay else len(named), panel_size, ncols)
    for i, (name, counts, edges) in enumerate(named):
        ax = axes[0] if overlay else axes[i]
        if overlay:
            ax.stairs(counts, edges, label=name or "model", linewidth=1.5)
        else:
            ax.bar(
                (edges[:-1] + edges[1:]) / 2,
                counts,
                width=np.diff(edges),
                color="tab:blue",
                edgecolor="black",
                linewidth=0.6,
                label="Count",
            )
            ax.set_title(f"{name}\nN = {int(counts.sum()):,}" if name else f"N = {int(counts.sum()):,}", fontsize=10)
    for ax in axes:
        ax.set_yscale("log")  # the extreme bins hold orders of magnitude more voxels than the middle ones
        ax.set_xlim(0, 1)
        ax.set_xlabel("Predicted probability")
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("Voxels (log scale)")
    if overlay:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    if save_path is not None:
        save_figure(fig, save_path, dpi=dpi)
    return fig
