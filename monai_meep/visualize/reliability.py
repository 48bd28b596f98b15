# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Reliability diagrams (paper Fig. 2, top), drawn off-screen with matplotlib's Agg canvas.

The figures are built on ``matplotlib.figure.Figure`` with an Agg canvas attached, never through ``pyplot``: nothing
opens a window, the user's global backend is left alone, and a handler that draws a figure every epoch does not leak
figures into pyplot's registry. The probability histogram (Fig. 2, bottom) is in :mod:`.histogram`, on the same
figure helpers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import OptionalImportError, optional_import

from monai_meep.utils import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure
else:
    Figure, _has_mpl = optional_import("matplotlib.figure", name="Figure")
FigureCanvasAgg, _has_agg = optional_import("matplotlib.backends.backend_agg", name="FigureCanvasAgg")

__all__ = [
    "ReliabilityData",
    "as_reliability_data",
    "named_items",
    "new_figure",
    "plot_reliability_diagram",
    "require_matplotlib",
    "save_figure",
    "select_row",
    "to_numpy",
]

# Accepted spellings of the three per-bin arrays, so that a ``reliability_curve`` result (named tuple, dataclass or
# dict), a plain dict or a ``(confidence, frequency, count)`` tuple can all be plotted.
_CONF_KEYS = ("mean_confidence", "confidence", "mean_prob", "mean_probability", "conf", "prob_true")
_FREQ_KEYS = ("observed_frequency", "frequency", "accuracy", "fraction_of_positives", "freq", "acc")
_COUNT_KEYS = ("count", "counts", "bin_count", "bin_counts", "n")
_EDGE_KEYS = ("bin_edges", "edges", "boundaries")


def require_matplotlib(who: str = "monai_meep.visualize") -> None:
    """Raise ``OptionalImportError`` naming ``who`` when matplotlib (with its Agg canvas) is not installed."""
    if not (_has_mpl and _has_agg):
        raise OptionalImportError(
            f"{who} needs matplotlib (pip install 'matplotlib>=3.7') to draw reliability diagrams."
        )


@dataclass
class ReliabilityData:
    """Per-bin data of one reliability diagram (one model, one class), as float64 / int64 NumPy arrays.

    Attributes:
        confidence: mean predicted probability per bin, NaN for empty bins, shape ``(num_bins,)``.
        frequency: observed frequency of the positive label (or of correct top-label predictions) per bin, NaN for
            empty bins.
        count: number of voxels per bin.
        lower: lower edge of each bin (NaN where an adaptive bin is empty).
        upper: upper edge of each bin.
    """

    confidence: np.ndarray
    frequency: np.ndarray
    count: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error on these bins: ``sum_b n_b / N * |conf_b - freq_b|`` (NaN when empty)."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        nz = self.count > 0
        return float(np.sum(self.count[nz] * np.abs(self.confidence[nz] - self.frequency[nz])) / n)


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (detached, on the CPU; bfloat16 as float32) or array-like as a NumPy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.numpy() if x.dtype != torch.bfloat16 else x.float().numpy()
    return np.asarray(x)


def _lookup(obj: Any, keys: Sequence[str]) -> Any:
    for k in keys:
        if isinstance(obj, Mapping) and k in obj:
            return obj[k]
        if not isinstance(obj, Mapping) and hasattr(obj, k):
            return getattr(obj, k)
    return None


def select_row(arr: np.ndarray, row: int | None, what: str) -> np.ndarray:
    """Row ``row`` of a per-class ``(num_classes, num_bins)`` array (a 1-D array as it is; one row needs no index)."""
    if arr.ndim == 1:
        return arr
    if arr.ndim == 2:
        if row is None:
            if arr.shape[0] == 1:
                return arr[0]
            raise ValueError(
                f"{what} has shape {tuple(arr.shape)} (one row per class); pass class_index to choose the class."
            )
        if not -arr.shape[0] <= row < arr.shape[0]:
            raise ValueError(f"class_index={row} is out of range for {what} of shape {tuple(arr.shape)}.")
        return arr[row]
    raise ValueError(f"{what} must be 1-D (num_bins,) or 2-D (num_classes, num_bins), got shape {tuple(arr.shape)}.")


def as_reliability_data(curve: Any, class_index: int | None = None) -> ReliabilityData:
    """Normalise one reliability curve to :class:`ReliabilityData`.

    Args:
        curve: a :class:`monai_meep.metrics.ReliabilityCurve` (``reliability_curve`` / ``reliability_curve_from_
            histogram``), a mapping or object with mean confidence / observed frequency / count fields (several
            spellings accepted, e.g. ``confidence``, ``frequency``, ``counts``, optional ``bin_lower`` /
            ``bin_upper`` or ``bin_edges``), or a ``(confidence, frequency, count)`` tuple. Arrays are
            ``(num_bins,)`` or ``(rows, num_bins)``.
        class_index: which row to use when there are several: the class label when the curve lists its rows'
            ``classes`` (a ``ReliabilityCurve``), else the row number. Not needed for a single row.

    Returns:
        The curve as float64 / int64 NumPy arrays; uniform edges over [0, 1] unless the curve gives its own.

    Raises:
        ValueError: when fields are missing, shapes disagree, the class is not in the curve, or counts are negative.

    Example:
        >>> d = as_reliability_data(([0.05, 0.95], [0.0, 1.0], [10, 10]))
        >>> d.ece
        0.05
    """
    if isinstance(curve, ReliabilityData):
        return curve
    lower = upper = edges = None
    if isinstance(curve, (tuple, list)) and len(curve) == 3 and not hasattr(curve, "_fields"):
        conf, freq, count = curve
    else:
        conf, freq = _lookup(curve, _CONF_KEYS), _lookup(curve, _FREQ_KEYS)
        count, edges = _lookup(curve, _COUNT_KEYS), _lookup(curve, _EDGE_KEYS)
        lower, upper = _lookup(curve, ("bin_lower", "lower")), _lookup(curve, ("bin_upper", "upper"))
        if conf is None or freq is None or count is None:
            raise ValueError(
                f"cannot read a reliability curve from {type(curve).__name__}: expected mean confidence "
                f"({'/'.join(_CONF_KEYS)}), observed frequency ({'/'.join(_FREQ_KEYS)}) and count "
                f"({'/'.join(_COUNT_KEYS)}) fields, or a (confidence, frequency, count) tuple."
            )
    row = class_index
    classes = _lookup(curve, ("classes",)) if not isinstance(curve, (tuple, list)) else None
    if class_index is not None and classes is not None:
        classes = list(classes)
        if class_index not in classes:
            raise ValueError(f"class_index={class_index} is not in this curve's classes {classes}.")
        row = classes.index(class_index)
    conf = select_row(to_numpy(conf).astype(np.float64), row, "confidence")
    freq = select_row(to_numpy(freq).astype(np.float64), row, "frequency")
    count_f = select_row(to_numpy(count).astype(np.float64), row, "count")
    if not conf.shape == freq.shape == count_f.shape:
        raise ValueError(
            f"confidence {conf.shape}, frequency {freq.shape} and count {count_f.shape} must have the same shape."
        )
    if np.any(count_f < 0) or not np.all(np.isfinite(count_f)):
        raise ValueError("bin counts must be finite and non-negative.")
    count_i = np.rint(count_f).astype(np.int64)
    nb = conf.shape[0]
    if lower is not None and upper is not None:
        lo = select_row(to_numpy(lower).astype(np.float64), row, "bin_lower")
        hi = select_row(to_numpy(upper).astype(np.float64), row, "bin_upper")
    elif edges is not None:
        e = select_row(to_numpy(edges).astype(np.float64), row, "bin_edges")
        if e.shape != (nb + 1,):
            raise ValueError(f"bin_edges must have shape ({nb + 1},) for {nb} bins, got {tuple(e.shape)}.")
        lo, hi = e[:-1], e[1:]
    else:
        e = np.linspace(0.0, 1.0, nb + 1)
        lo, hi = e[:-1], e[1:]
    if lo.shape != (nb,) or hi.shape != (nb,):
        raise ValueError(f"bin edges have shapes {lo.shape} / {hi.shape}, expected ({nb},).")
    # Empty bins carry no mean: store NaN so that a 0 is never mistaken for a measured frequency.
    empty = count_i == 0
    conf, freq = conf.copy(), freq.copy()
    conf[empty], freq[empty] = np.nan, np.nan
    return ReliabilityData(confidence=conf, frequency=freq, count=count_i, lower=lo.copy(), upper=hi.copy())


def _is_single(obj: Any) -> bool:
    """True when ``obj`` is one curve / one histogram source rather than a collection of them."""
    if isinstance(obj, Mapping):
        return any(k in obj for k in _CONF_KEYS + _FREQ_KEYS + _COUNT_KEYS)
    if isinstance(obj, (tuple, list)) and not hasattr(obj, "_fields"):
        return (
            len(obj) == 3
            and all(isinstance(x, (np.ndarray, torch.Tensor, list, tuple)) for x in obj)
            and all(np.ndim(to_numpy(x)) >= 1 and np.asarray(to_numpy(x)).dtype.kind in "fiub" for x in obj)
        )
    return True


def named_items(items: Any, what: str) -> list[tuple[str, Any]]:
    """``[(label, curve), ...]`` of one curve (label ``""``), a mapping (its keys) or a sequence (``"model i"``)."""
    if _is_single(items):
        return [("", items)]
    if isinstance(items, Mapping):
        out = [(str(k), v) for k, v in items.items()]
    else:
        out = [(f"model {i}", v) for i, v in enumerate(items)]
    if not out:
        raise ValueError(f"no {what} to plot: got an empty collection.")
    return out


def new_figure(n_panels: int, panel_size: tuple[float, float], ncols: int | None = None) -> tuple[Figure, list]:
    """A figure of ``n_panels`` axes in rows of ``ncols`` (default: one row); only the ``n_panels`` axes exist."""
    require_matplotlib()
    ncols = n_panels if ncols is None else max(1, min(int(ncols), n_panels))
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # attach an off-screen canvas: savefig / TensorBoard rendering never need a display
    grid = list(fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel())
    for ax in grid[n_panels:]:  # the unused cells of the last row
        fig.delaxes(ax)
    return fig, grid[:n_panels]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> str:
    """Save ``fig`` as PNG atomically: a temporary file in the same folder, then ``os.replace``.

    A reader (TensorBoard, a CI artefact collector, a browser) never sees a half-written file.

    Args:
        fig: the figure.
        path: destination; the folder is created when missing.
        dpi: resolution.

    Returns:
        The path written, as a string.
    """
    path = os.fspath(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path


def plot_reliability_diagram(
    curves: Any,
    class_index: int | None = None,
    ece: Mapping[str, float] | Sequence[float] | float | None = None,
    overlay: bool = False,
    title: str | None = None,
    save_path: str | os.PathLike | None = None,
    dpi: int = 100,
    panel_size: tuple[float, float] = (4.0, 4.0),
    ncols: int | None = None,
    show_counts: bool = True,
) -> Figure:
    """Reliability diagram: observed frequency per bin as bars against the diagonal, the gap to the bin's mean
    confidence shaded, ECE in the title, the number of voxels of each bin above its bar (so a bin of a few hundred
    voxels is not read like one of 10^7); several models side by side (one panel each) or overlaid as lines.

    Args:
        curves: one curve (see :func:`as_reliability_data`), a mapping ``{model name: curve}`` or a list of curves.
        class_index: the class to plot when a curve has several rows: the class label for a ``ReliabilityCurve``
            (which lists its rows' ``classes``), else the row number. Not needed for a single row.
        ece: ECE to print in each title (a float, one per model, or ``{name: value}``), e.g. the paper's 15-bin ECE
            from ``calibration_error``. When omitted, the ECE of the plotted bins is printed, with their number.
        overlay: draw all models on one axes as lines with markers instead of one bar panel per model.
        title: figure title (suptitle).
        save_path: when given, the PNG is written there (atomically).
        dpi: resolution of the saved PNG.
        panel_size: size of one panel in inches.
        ncols: panels per row (default: all in one row); further models wrap onto new rows.
        show_counts: write each non-empty bin's voxel count above its bar (bar panels only).

    Returns:
        The matplotlib ``Figure`` (Agg canvas). Bars of panel ``i`` are ``fig.axes[i].containers`` labelled
        ``"Observed frequency"`` (one patch per bin, height 0 for empty bins) and ``"Gap"``.

    Raises:
        ValueError: for unreadable curves or an ``ece`` that does not match the models.
        OptionalImportError: when matplotlib is not installed.

    Example:
        >>> from monai_meep.metrics import reliability_curve
        >>> fig = plot_reliability_diagram({"Dice": reliability_curve(p1, y), "Dice+MEEP": reliability_curve(p2, y)},
        ...                                save_path="reliability.png")  # binary: the foreground row
    """
    named = [(name, as_reliability_data(c, class_index)) for name, c in named_items(curves, "curves")]
    eces = _ece_labels(named, ece)
    fig, axes = new_figure(1 if overlay else len(named), panel_size, ncols)
    for i, (name, data) in enumerate(named):
        ax = axes[0] if overlay else axes[i]
        if overlay:
            nz = data.count > 0
            ax.plot(data.confidence[nz], data.frequency[nz], marker="o", label=f"{name or 'model'} ({eces[i]})")
            continue
        # adaptive bins that are empty have NaN edges: draw them as zero-width bars so patch i stays bin i
        lo, hi = np.nan_to_num(data.lower), np.nan_to_num(data.upper)
        centers, widths = (lo + hi) / 2, hi - lo
        heights = np.nan_to_num(data.frequency, nan=0.0)
        ax.bar(
            centers,
            heights,
            width=widths,
            color="tab:blue",
            edgecolor="black",
            linewidth=0.6,
            label="Observed frequency",
        )
        nz = data.count > 0
        bottom = np.where(nz, np.minimum(heights, np.nan_to_num(data.confidence)), 0.0)
        gap = np.where(nz, np.abs(np.nan_to_num(data.confidence) - heights), 0.0)
        ax.bar(
            centers,
            gap,
            bottom=bottom,
            width=widths,
            color="tab:red",
            alpha=0.3,
            edgecolor="tab:red",
            hatch="//",
            linewidth=0.6,
            label="Gap",
        )
        if show_counts:
            tops = np.maximum(heights, np.nan_to_num(data.confidence))  # above the bar and its gap
            for x, top, n in zip(centers[nz], tops[nz], data.count[nz], strict=True):
                # vertical and small (bins are narrow), on a light box so the hatching does not hide it
                box = {"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}
                ax.text(x, min(float(top), 0.84) + 0.02, _short_count(int(n)), rotation=90, fontsize=6, ha="center",
                        va="bottom", bbox=box)  # fmt: skip
        ax.set_title(f"{name}\n{eces[i]}" if name else eces[i], fontsize=10)
    for ax in axes:
        ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="Perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("Confidence")
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("Observed frequency")
    axes[0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    if save_path is not None:
        save_figure(fig, save_path, dpi=dpi)
    return fig


def _short_count(n: int) -> str:
    """``950``, ``12k``, ``3.4M``, ``1.2G``: a voxel count in at most four characters."""
    for size, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            v = n / size
            return f"{v:.1f}{suffix}" if v < 10 else f"{v:.0f}{suffix}"
    return str(n)


def _ece_labels(named: list[tuple[str, ReliabilityData]], ece: Any) -> list[str]:
    if ece is None:
        return [f"ECE ({d.count.shape[0]} bins) = {d.ece:.4f}" for _, d in named]
    if isinstance(ece, Mapping):
        missing = [n for n, _ in named if n not in ece]
        if missing:
            raise ValueError(f"ece has no value for model(s) {missing}; got keys {list(ece)}.")
        values = [float(ece[n]) for n, _ in named]
    elif np.ndim(to_numpy(ece)) == 0:
        values = [float(to_numpy(ece))] * len(named)
    else:
        values = [float(v) for v in np.ravel(to_numpy(ece))]
        if len(values) != len(named):
            raise ValueError(f"ece has {len(values)} values for {len(named)} models.")
    return [f"ECE = {v:.4f}" for v in values]
