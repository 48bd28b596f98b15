# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Ignite handler that streams an evaluation into a :class:`CalibrationHistogram` and, at the end of each epoch,
writes the reliability diagram, the probability histogram (paper Fig. 2) and the bin table, optionally to
TensorBoard too."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, OptionalImportError, min_version, optional_import

from monai_meep.metrics import (
    STATE_FILE,
    CalibrationHistogram,
    calibration_error_from_histogram,
    reliability_curve_from_histogram,
    save_calibration_state,
)
from monai_meep.utils import atomic_open, check_int
from monai_meep.visualize.histogram import plot_probability_histogram
from monai_meep.visualize.reliability import plot_reliability_diagram, require_matplotlib, save_figure

from .calibration_state import SharedCalibrationState

idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
pd, _has_pandas = optional_import("pandas")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["ReliabilityDiagramSaver"]


class ReliabilityDiagramSaver:
    """Stream ``prob`` / ``label`` of every iteration into a :class:`~monai_meep.metrics.CalibrationHistogram` and,
    when the epoch completes, write to ``output_dir``:

    - ``reliability.png``: reliability diagram (observed frequency bars vs the diagonal, gap shaded, ECE on
      ``ece_bins`` bins in the title), one panel per plotted class;
    - ``probability_histogram.png``: histogram of the predicted probabilities, log-scale counts (paper Fig. 2);
    - ``reliability.csv``: the bin table (``epoch, class, bin, lower, upper, count, confidence, frequency``, ...,
      and ``region`` when one is given);
    - ``calibration_state.pt`` (``state_file``): the pooled histogram itself, exact (int64 counts, float64 sums), in
      the versioned format of :func:`monai_meep.metrics.save_calibration_state`, so that seeds and folds are pooled
      with ``CalibrationHistogram.merge`` rather than from the rounded CSV;
    - both figures to TensorBoard (``add_figure``, ``global_step`` = epoch) when ``summary_writer`` is given: pass
      the same ``SummaryWriter`` as to MONAI's ``TensorBoardStatsHandler(summary_writer=...)`` for one event file
      (nothing is looked up on the engine).

    State is a fixed-size histogram (int64 counts, float64 sums), so memory does not grow with the evaluation and
    the values are exact. Under DDP every rank accumulates its share, the histograms are summed across ranks
    (exactly) and only rank 0 writes. Files are written to a temporary name then moved into place.

    Args:
        output_dir: folder of the PNG / CSV files (created when missing).
        num_classes: classes of the task (2 for a binary task; a 1-channel sigmoid output counts as 2).
        num_bins: bins of the diagram and the histogram (10 in the paper's figures).
        ece_bins: bins of the ECE printed in the titles (15 in the paper's tables).
        mode: ``"marginal"`` (per class, ``p_c`` vs ``y == c``) or ``"top_label"`` (arg-max confidence vs
            correctness).
        classes: classes to plot in marginal mode; default: the foreground classes ``1 .. num_classes - 1``.
        prob_key, label_key, mask_key: keys of ``engine.state.output`` (a dict, or a list of per-image dicts as
            MONAI's decollated engine output) used when ``output_transform`` is ``None``. ``mask_key=None``: no mask.
        output_transform: callable mapping ``engine.state.output`` to ``(prob, label)`` or ``(prob, label, mask)``;
            each a batch tensor ``(B, C, *spatial)`` or a list of channel-first tensors.
        ignore_index: label whose voxels are not scored (e.g. 2, "other pathology", for WMH).
        summary_writer: a TensorBoard / TensorBoardX ``SummaryWriter`` (anything with ``add_figure``) that receives
            both figures each epoch; ``None``: no TensorBoard output.
        tag: TensorBoard tag prefix.
        num_sub_bins: sub-bins of the histogram; must be a multiple of ``num_bins`` and ``ece_bins``.
        dpi: resolution of the PNGs.
        title: what the figures show, e.g. ``"Dice + MEEP-KL, test split"``; the figure titles read
            ``"Reliability: <title> (epoch N)"`` (default: the epoch only).
        region: the image region the bins cover, e.g. ``"whole volume"`` or ``"heart-centred crop 144x144x80
            voxels"``, written as a ``region`` column of ``reliability.csv`` (``None``: no column).
        state: a :class:`~monai_meep.handlers.SharedCalibrationState` shared with the evaluator's calibration metric
            handlers: the saver then draws the state's pooled histogram (one read of the probabilities per
            iteration for all of them) and ``prob_key`` / ``label_key`` / ``mask_key`` / ``output_transform`` /
            ``ignore_index`` / ``num_sub_bins`` are the state's (leave them at their defaults). ``None``: the saver
            accumulates its own histogram.
        state_file: file name (in ``output_dir``) of the pooled state; ``None``: not written.

    Raises:
        OptionalImportError: when matplotlib or pandas is not installed.
        TypeError: ``summary_writer`` has no ``add_figure`` method.
        ValueError: for an unknown mode or a class outside ``[0, num_classes)``.

    Example:
        >>> saver = ReliabilityDiagramSaver("./eval/reliability", num_classes=2, ignore_index=2)
        >>> saver.attach(evaluator)  # post-processing keeps a ``prob`` copy before AsDiscreted
        >>> evaluator.run()          # writes reliability.png, probability_histogram.png, reliability.csv
    """

    def __init__(
        self,
        output_dir: str | os.PathLike = "./reliability",
        num_classes: int = 2,
        num_bins: int = 10,
        ece_bins: int = 15,
        mode: str = "marginal",
        classes: Sequence[int] | None = None,
        prob_key: str = "prob",
        label_key: str = "label",
        mask_key: str | None = None,
        output_transform: Callable[[Any], Sequence[Any]] | None = None,
        ignore_index: int | None = None,
        summary_writer: Any = None,
        tag: str = "reliability",
        num_sub_bins: int | None = None,
        dpi: int = 100,
        title: str | None = None,
        region: str | None = None,
        state: SharedCalibrationState | None = None,
        state_file: str | None = STATE_FILE,
    ) -> None:
        require_matplotlib("ReliabilityDiagramSaver")
        if not _has_pandas:
            raise OptionalImportError("ReliabilityDiagramSaver needs pandas to write the bin table.")
        if mode not in ("marginal", "top_label"):
            raise ValueError(f"mode must be 'marginal' or 'top_label', got {mode!r}.")
        self.classes = list(range(1, int(num_classes))) if classes is None else [int(c) for c in classes]
        bad = [c for c in self.classes if not 0 <= c < int(num_classes)]
        if bad or not self.classes:
            raise ValueError(f"classes {list(self.classes)} must be non-empty and lie in [0, {int(num_classes) - 1}].")
        num_bins, ece_bins = check_int(num_bins, "num_bins", 1), check_int(ece_bins, "ece_bins", 1)
        if state is not None:
            if not isinstance(state, SharedCalibrationState):
                raise TypeError(f"state must be a SharedCalibrationState, got {type(state).__name__}.")
            if output_transform is not None or mask_key is not None or ignore_index is not None or num_sub_bins:
                raise ValueError(
                    "ReliabilityDiagramSaver reads a shared state: output_transform / mask_key / ignore_index / "
                    "num_sub_bins are the state's (set them there)."
                )
            if state.num_classes is not None and state.num_classes != int(num_classes):
                raise ValueError(f"num_classes={num_classes} but the shared state has {state.num_classes}.")
            num_sub_bins = state.num_sub_bins
        # sub-bins: a common multiple of both bin counts, at the histogram's resolution or finer
        sub = num_sub_bins or _lcm_multiple(int(num_bins), int(ece_bins), 6000)
        if sub % num_bins or sub % ece_bins:
            raise ValueError(f"num_sub_bins={sub} must be a multiple of num_bins={num_bins} and ece_bins={ece_bins}.")
        self.output_dir = os.fspath(output_dir)
        self.num_bins, self.ece_bins, self.mode = int(num_bins), int(ece_bins), mode
        self.keys = (prob_key, label_key, mask_key)
        self.output_transform = output_transform
        self.ignore_index = ignore_index
        if summary_writer is not None and not callable(getattr(summary_writer, "add_figure", None)):
            raise TypeError(
                f"summary_writer must be a SummaryWriter (with add_figure), got {type(summary_writer).__name__}; "
                "pass the writer itself, e.g. the one given to TensorBoardStatsHandler(summary_writer=...)."
            )
        self.summary_writer = summary_writer
        self.tag, self.dpi = tag, dpi
        self.title = None if title in (None, "") else str(title)
        self.region = None if region in (None, "") else str(region)
        self.shared_state = state
        self.state_file = None if state_file in (None, "") else os.fspath(state_file)
        self.num_classes = int(num_classes)
        # the saver's own accumulator (None with a shared state, whose pooled histogram it draws)
        self.histogram = CalibrationHistogram(int(num_classes), num_sub_bins=sub) if state is None else None
        self.last_histogram: CalibrationHistogram | None = None  # the pooled histogram of the last completed epoch
        self.last_curve: Any = None  # the ReliabilityCurve of the last completed epoch (all classes)
        self.last_ece: dict[str, float] = {}

    def attach(self, engine: Engine) -> None:
        """Reset at ``EPOCH_STARTED``, accumulate at ``ITERATION_COMPLETED``, write at ``EPOCH_COMPLETED`` (a shared
        state is attached to ``engine`` and resets itself)."""
        if self.shared_state is not None:
            self.shared_state.attach(engine)
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Clear the accumulated histogram (a shared state is reset by its own ``EPOCH_STARTED`` handler)."""
        if self.histogram is not None:
            self.histogram.reset()

    # ------------------------------------------------------------------------------------------- accumulating
    def _extract(self, output: Any) -> tuple[Any, Any, Any]:
        if self.output_transform is not None:
            out = self.output_transform(output)
            if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
                raise ValueError("output_transform must return (prob, label) or (prob, label, mask).")
            return out[0], out[1], out[2] if len(out) == 3 else None
        prob_key, label_key, mask_key = self.keys
        items = output if isinstance(output, (list, tuple)) else [output]
        if not all(isinstance(i, Mapping) for i in items):
            raise ValueError(
                f"engine output is {type(output).__name__}; expected a dict or a list of dicts with keys "
                f"{prob_key!r}, {label_key!r}, or pass output_transform."
            )

        def get(item: Mapping, key: str) -> Any:
            if key not in item:
                raise ValueError(f"key {key!r} is not in the engine output (keys: {sorted(item)}).")
            return item[key]

        probs = [get(i, prob_key) for i in items]
        labels = [get(i, label_key) for i in items]
        masks = None if mask_key is None else [get(i, mask_key) for i in items]
        if not isinstance(output, (list, tuple)):  # one batch dict
            return probs[0], labels[0], None if masks is None else masks[0]
        return probs, labels, masks

    def update(self, engine: Engine) -> None:
        """Add the current iteration's ``(prob, label[, mask])`` to the histogram (with a shared state: make sure the
        state has read this iteration, once for all its handlers)."""
        if self.shared_state is not None:
            self.shared_state.read(engine)
            return
        prob, label, mask = self._extract(engine.state.output)
        if isinstance(prob, torch.Tensor):  # a batch (B, C, *spatial)
            self.histogram.update(prob, label, mask=mask, ignore_index=self.ignore_index)
            return
        # a list of channel-first images (MONAI's decollated output); sizes may differ, so one update each
        masks = [None] * len(prob) if mask is None else mask
        if not len(prob) == len(label) == len(masks):
            raise ValueError(f"got {len(prob)} probability, {len(label)} label and {len(masks)} mask images.")
        for p, y, m in zip(prob, label, masks, strict=True):
            self.histogram.update(
                p.unsqueeze(0),
                y.unsqueeze(0),
                mask=None if m is None else m.unsqueeze(0),
                ignore_index=self.ignore_index,
            )

    def _ignore_index(self) -> int | None:
        return self.ignore_index if self.shared_state is None else self.shared_state.ignore_index

    # ----------------------------------------------------------------------------------------------- writing
    def _curves(self, h: CalibrationHistogram) -> tuple[dict[str, Any], dict[str, float], Any]:
        if self.mode == "top_label":
            curve = reliability_curve_from_histogram(h, self.num_bins, mode="top_label")
            ece = float(calibration_error_from_histogram(h, self.ece_bins, mode="top_label"))
            return {"top-label": curve}, {"top-label": ece}, curve
        curve = reliability_curve_from_histogram(h, self.num_bins, include_background=True)
        eces = calibration_error_from_histogram(h, self.ece_bins, include_background=True)
        names = self._names()
        curves = {names[c]: curve.row(c) for c in self.classes}
        return curves, {names[c]: float(eces[c]) for c in self.classes}, curve

    def _names(self) -> dict[int, str]:
        """Panel titles: "foreground" for the usual binary task, else "class c"."""
        if self.num_classes == 2 and self.classes == [1]:
            return {1: "foreground"}
        return {c: f"class {c}" for c in self.classes}

    def write(self, engine: Engine) -> None:
        """All-reduce the histogram across ranks, then (rank 0 only) write the figures, CSV, state and TensorBoard."""
        if self.shared_state is None:
            self.histogram.all_reduce()
            pooled = self.histogram
        else:
            pooled = self.shared_state.pooled_histogram()  # a reduced copy, read by the metrics too
            if pooled.num_classes != self.num_classes:
                raise ValueError(
                    f"the shared state saw {pooled.num_classes} classes, this saver expects {self.num_classes}."
                )
        self.last_histogram = pooled
        if idist.get_rank() != 0:
            return
        if int(pooled.num_voxels) == 0:
            warnings.warn("ReliabilityDiagramSaver: no voxel was accumulated this epoch; nothing written.")
            return
        epoch = int(engine.state.epoch)
        with warnings.catch_warnings():  # an empty class row gives NaN with a warning from the metrics; shown as NaN
            warnings.simplefilter("ignore")
            curves, eces, full = self._curves(pooled)
        self.last_curve, self.last_ece = full, eces
        os.makedirs(self.output_dir, exist_ok=True)
        what = f": {self.title}" if self.title else ""
        rel = plot_reliability_diagram(curves, ece=eces, title=f"Reliability{what} (epoch {epoch})")
        hist_fig = plot_probability_histogram(curves, title=f"Predicted probabilities{what} (epoch {epoch})")
        save_figure(rel, os.path.join(self.output_dir, "reliability.png"), dpi=self.dpi)
        save_figure(hist_fig, os.path.join(self.output_dir, "probability_histogram.png"), dpi=self.dpi)
        records = [r for r in full.to_records() if self.mode == "top_label" or r["class"] in self.classes]
        frame = pd.DataFrame.from_records(records)
        frame.insert(0, "epoch", epoch)
        frame["ece_bins"] = self.ece_bins
        names = self._names()
        frame["ece"] = [eces["top-label" if self.mode == "top_label" else names[r["class"]]] for r in records]
        if self.region is not None:
            frame["region"] = self.region
        with atomic_open(os.path.join(self.output_dir, "reliability.csv"), newline="") as f:
            frame.to_csv(f, index=False)
        if self.state_file is not None:
            meta = {"epoch": epoch, "mode": self.mode, "classes": list(self.classes),
                    "ignore_index": self._ignore_index(), "region": self.region, "title": self.title}  # fmt: skip
            save_calibration_state(os.path.join(self.output_dir, self.state_file), pooled, meta)
        writer = self.summary_writer
        if writer is not None:
            writer.add_figure(f"{self.tag}/reliability_diagram", rel, global_step=epoch)
            writer.add_figure(f"{self.tag}/probability_histogram", hist_fig, global_step=epoch)


def _lcm_multiple(a: int, b: int, at_least: int) -> int:
    """The smallest multiple of ``lcm(a, b)`` that is >= ``at_least``."""
    m = a * b // math.gcd(a, b)
    return m * max(1, -(-at_least // m))
