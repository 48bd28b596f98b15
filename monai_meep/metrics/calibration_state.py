# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""One calibration state shared by several metrics (a compute group, as torchmetrics has), and its file format.

:class:`CalibrationState` validates and reads a batch of probabilities **once**: it builds one
:class:`~monai_meep.metrics.histogram.CalibrationHistogram` per image (kept as :attr:`CalibrationState.images` until
the next batch) and adds them to one pooled histogram. Every metric of :mod:`.calibration_metric` holds such a state:
a private one by default (the metric then works alone, as before), or one shared with other metrics given as
``state=``; then the metrics only *score* the state's histograms (:meth:`~._HistogramMetric.accumulate`) and the
update runs once per batch for all of them. The Ignite side (one update per engine iteration) is
:class:`monai_meep.handlers.SharedCalibrationState`.

:func:`save_calibration_state` / :func:`load_calibration_state` write and read a pooled histogram as a small
``.pt`` file (format below), so that tables and figures pool seeds with :meth:`CalibrationHistogram.merge` instead
of re-parsing rounded CSV bins.

State file format (``FORMAT_NAME``, version ``FORMAT_VERSION`` = 1): a ``torch.save`` of a plain dict, loaded with
``torch.load(weights_only=True)`` (nothing is unpickled but tensors and plain Python values)::

    {
      "format": "monai_meep.calibration_state",  # the file's kind
      "version": 1,                              # bumped on an incompatible change; readers refuse other versions
      "histogram": CalibrationHistogram.state_dict(),   # int64 counts, float64 sums, num_classes, num_sub_bins
      "sha256": "<hex>",                         # digest of the histogram's tensors (field order, C-contiguous bytes)
      "meta": {...},                             # free-form JSON-like facts (epoch, ignore_index, region, ...)
    }

A file whose digest does not match its tensors (edited by hand, or damaged), of another format or version, or whose
state no sequence of updates can produce is refused with a ``ValueError`` naming the file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from monai_meep.dist import all_reduce_, is_distributed
from monai_meep.utils import atomic_open

from .histogram import _FLOAT_FIELDS, _INT_FIELDS, DEFAULT_NUM_SUB_BINS, CalibrationHistogram

__all__ = [
    "CalibrationState",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "STATE_FILE",
    "load_calibration_state",
    "save_calibration_state",
]

FORMAT_NAME = "monai_meep.calibration_state"
FORMAT_VERSION = 1
#: the file name evaluation writes beside its CSVs (``ReliabilityDiagramSaver(state_file=...)``)
STATE_FILE = "calibration_state.pt"


def _class_count_range(mine: int) -> tuple[int, int]:
    """``(smallest, largest)`` class count over the ranks that have data (``-1, -1`` when none has): one collective."""
    none = -(1 << 40)  # a rank without data must not win the max of -count
    t = torch.tensor([mine, -mine if mine >= 0 else none], dtype=torch.int64)
    all_reduce_(t, op=dist.ReduceOp.MAX)
    hi, neg_lo = int(t[0]), int(t[1])
    return (-1, -1) if hi < 0 else (-neg_lo, hi)


class CalibrationState:
    """Per-image histograms of the latest batch and the pooled histogram of all batches, shared by metrics.

    Args:
        num_classes: classes ``C`` (a 1-channel sigmoid output counts as 2); ``None``: read from the first batch.
        num_sub_bins: resolution of the histograms; every uniform ``num_bins`` of a metric reading the state must
            divide it (6000 serves 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, ... bins).
        ignore_index: label whose voxels are not scored (index targets), e.g. 2 for WMH.
        check_sum: check that multi-channel probabilities sum to 1.
        owner: who the state serves, for error messages.

    Example:
        >>> from monai_meep.metrics import BrierScoreMetric, ExpectedCalibrationErrorMetric
        >>> state = CalibrationState()
        >>> ece, brier = ExpectedCalibrationErrorMetric(state=state), BrierScoreMetric(state=state)
        >>> probs = torch.softmax(torch.randn(2, 2, 8, 8), 1)
        >>> hists = state.update(probs, torch.randint(0, 2, (2, 1, 8, 8)))  # validated and read once
        >>> rows = ece.accumulate(hists), brier.accumulate(hists)  # both score the same histograms
        >>> _ = ece.aggregate(), brier.aggregate()
    """

    def __init__(
        self,
        num_classes: int | None = None,
        num_sub_bins: int = DEFAULT_NUM_SUB_BINS,
        ignore_index: int | None = None,
        check_sum: bool = True,
        owner: str = "CalibrationState",
    ) -> None:
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 2):
            raise ValueError(f"num_classes must be None or an int >= 2, got {num_classes!r}.")
        if isinstance(num_sub_bins, bool) or int(num_sub_bins) < 1:
            raise ValueError(f"num_sub_bins must be an int >= 1, got {num_sub_bins!r}.")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.num_sub_bins = int(num_sub_bins)
        self.ignore_index = ignore_index
        self.check_sum = bool(check_sum)
        self.owner = owner
        self.histogram: CalibrationHistogram | None = None
        self.images: list[CalibrationHistogram] = []
        self.num_updates = 0
        self._pooled: CalibrationHistogram | None = None
        self.reset()

    def new_histogram(self, num_classes: int) -> CalibrationHistogram:
        """An empty histogram of this state's configuration."""
        return CalibrationHistogram(num_classes, num_sub_bins=self.num_sub_bins, check_sum=self.check_sum)

    def reset(self) -> None:
        """Forget every batch (the pooled histogram and the latest per-image ones); ``num_updates`` keeps counting."""
        self.histogram = None if self.num_classes is None else self.new_histogram(self.num_classes)
        self.images = []
        self._pooled = None

    def update(
        self, y_pred: torch.Tensor | Sequence[torch.Tensor], y: Any, mask: Any = None
    ) -> list[CalibrationHistogram]:
        """Validate and read one batch: one histogram per image, added to the pooled one.

        Args:
            y_pred: ``(B, C, *spatial)`` probabilities (or ``(B, 1, *spatial)`` sigmoid foreground probability), or a
                list of channel-first images (MONAI's decollated output; sizes may differ).
            y: ``(B, 1, *spatial)`` class indices or ``(B, C, *spatial)`` one-hot, or a list of channel-first images.
            mask: optional boolean ``(B, 1, *spatial)`` (or a list of ``(1, *spatial)``); only ``True`` voxels count.

        Returns:
            the per-image histograms (also kept as :attr:`images` until the next update). Every image is validated
            before anything is merged, so a bad batch leaves the state as it was.

        Raises:
            ValueError: shapes, channel counts or values that :meth:`CalibrationHistogram.update` refuses.
        """
        if isinstance(y_pred, torch.Tensor):
            images = self._batch(y_pred, y, mask)
        else:
            if not isinstance(y_pred, Sequence) or not isinstance(y, Sequence) or len(y) != len(y_pred):
                n = len(y) if isinstance(y, Sequence) else type(y).__name__
                raise ValueError(f"y_pred and y must be lists of the same length, got {len(y_pred)} and {n}.")
            if mask is not None and len(mask) != len(y_pred):
                raise ValueError(f"mask must have one entry per image ({len(y_pred)}), got {len(mask)}.")
            images = []
            for i, (p, t) in enumerate(zip(y_pred, y, strict=True)):
                m = None if mask is None else torch.as_tensor(mask[i]).unsqueeze(0)
                images += self._batch(torch.as_tensor(p).unsqueeze(0), torch.as_tensor(t).unsqueeze(0), m, merge=False)
            for h in images:
                self.histogram.merge(h)  # type: ignore[union-attr]
        self.images = images
        self.num_updates += 1
        self._pooled = None
        return images

    def _batch(self, y_pred: Any, y: Any, mask: Any, merge: bool = True) -> list[CalibrationHistogram]:
        if y is None:
            raise ValueError(f"{self.owner} needs a ground truth `y`.")
        if not isinstance(y_pred, torch.Tensor) or y_pred.ndim < 2:
            raise ValueError(f"y_pred must be a tensor (B, C, *spatial), got {getattr(y_pred, 'shape', y_pred)}.")
        num_classes = max(2, int(y_pred.shape[1]))
        if self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(f"y_pred has {y_pred.shape[1]} channels, {self.owner} was built for {self.num_classes}.")
        if self.histogram is not None and self.histogram.num_classes != num_classes:
            raise ValueError(
                f"y_pred has {y_pred.shape[1]} channels but earlier batches had {self.histogram.num_classes} classes."
            )
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape[0] != y_pred.shape[0]):
            raise ValueError(f"mask must be a (B, 1, *spatial) tensor, got {getattr(mask, 'shape', type(mask))}.")
        if y_pred.shape[0] == 0:
            if not isinstance(y, torch.Tensor) or y.ndim != y_pred.ndim or y.shape[0] != 0:
                raise ValueError(
                    f"y_pred has batch size 0 but y has shape {tuple(getattr(y, 'shape', ()))}; expected an "
                    f"empty batch of the same layout."
                )
        hists = []
        for b in range(y_pred.shape[0]):
            m = None if mask is None else mask[b : b + 1]
            hists.append(self.new_histogram(num_classes).update(y_pred[b : b + 1], y[b : b + 1], m, self.ignore_index))
        if self.histogram is None:
            self.histogram = self.new_histogram(num_classes)
        if merge:
            for h in hists:
                self.histogram.merge(h)
        return hists

    def pooled_histogram(self) -> CalibrationHistogram:
        """A copy of the pooled histogram summed over all ranks (every rank must call this under DDP).

        Computed once per batch sequence: metrics sharing the state all read the same reduced copy (all ranks call
        it the same number of times, so the cached copy is consistent). Under DDP a rank that saw no image (fewer
        images than ranks) still takes part with an empty histogram of the class count its peers agree on; when no
        rank has data, or the ranks saw different class counts, every rank raises the same ``ValueError``.
        """
        if self._pooled is not None:
            return self._pooled.clone()
        if is_distributed():
            lo, hi = _class_count_range(-1 if self.histogram is None else self.histogram.num_classes)
            if hi < 0:
                raise ValueError(f"{self.owner}: no data accumulated on any rank (call the metric first).")
            if lo != hi:
                raise ValueError(f"{self.owner}: the ranks saw different class counts ({lo} to {hi}).")
            if self.histogram is None:
                self.histogram = self.new_histogram(hi)
        elif self.histogram is None:
            raise ValueError(f"{self.owner}: no data accumulated yet (call the metric before aggregate()).")
        self._pooled = self.histogram.clone().all_reduce()
        return self._pooled.clone()

    def __repr__(self) -> str:
        return (
            f"CalibrationState(num_classes={self.num_classes}, num_sub_bins={self.num_sub_bins}, "
            f"ignore_index={self.ignore_index}, num_updates={self.num_updates}, histogram={self.histogram})"
        )


# ------------------------------------------------------------------------------------------------- the state file
def _digest(state: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(f"{int(state['num_classes'])},{int(state['num_sub_bins'])}".encode())
    for k in _INT_FIELDS + _FLOAT_FIELDS:
        t = state[k]
        h.update(k.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_calibration_state(
    path: str | os.PathLike, histogram: CalibrationHistogram, meta: Mapping[str, Any] | None = None
) -> str:
    """Write ``histogram`` (its exact :meth:`~CalibrationHistogram.state_dict`) to ``path`` atomically, in the format of
    this module's docstring. ``meta``: plain values (str, int, float, bool, None, lists / dicts of them). Returns the
    path."""
    if not isinstance(histogram, CalibrationHistogram):
        raise TypeError(f"histogram must be a CalibrationHistogram, got {type(histogram).__name__}.")
    sd = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in histogram.state_dict().items()}
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "histogram": sd,
        "sha256": _digest(sd),
        "meta": dict(meta or {}),
    }
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
    return os.fspath(path)


def load_calibration_state(
    path: str | os.PathLike, with_meta: bool = False
) -> CalibrationHistogram | tuple[CalibrationHistogram, dict[str, Any]]:
    """Read a file of :func:`save_calibration_state`: the pooled histogram (and its ``meta`` with ``with_meta``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file cannot be read as a state file (damaged, not a ``torch.save`` of plain values), is of
            another format or version, its digest does not match its tensors (edited or damaged), or its state is
            one no update can produce (:meth:`CalibrationHistogram.load_state_dict`); the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no calibration state file at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...: one clear message, never an unpickling retry
        raise ValueError(f"{path} is not a readable calibration state file ({type(e).__name__}).") from e
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a calibration state file (format {FORMAT_NAME!r} expected).")
    if payload.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has calibration state format version {payload.get('version')!r}; this monai_meep reads version "
            f"{FORMAT_VERSION}."
        )
    sd = payload.get("histogram")
    try:
        if not isinstance(sd, Mapping):
            raise TypeError(f"'histogram' is {type(sd).__name__}, expected a state_dict mapping")
        hist = CalibrationHistogram(int(sd["num_classes"]), int(sd["num_sub_bins"]))
        digest = _digest(sd)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: malformed histogram state ({e}).") from e
    if digest != payload.get("sha256"):
        raise ValueError(f"{path}: the histogram does not match its sha256 digest (the file was edited or damaged).")
    try:
        hist.load_state_dict(sd)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e
    meta = payload.get("meta") or {}
    if not isinstance(meta, Mapping):
        warnings.warn(f"{path}: 'meta' is {type(meta).__name__}, not a mapping; ignored.")
        meta = {}
    return (hist, dict(meta)) if with_meta else hist
