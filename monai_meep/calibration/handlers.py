# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Ignite handler that fits a post-hoc calibrator on an evaluator's predictions and saves it as JSON.

Attach it to an evaluator that runs a frozen network on the validation split: every iteration streams the batch
into the calibrator (bounded memory), and when the run completes the streamed state is combined across DDP ranks
(summed histograms / merged samples), the calibrator is fitted on every rank and rank 0 writes the JSON file
(atomically), typically next to the checkpoint. ``CalibrateProbabilitiesd`` then applies it at inference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from monai.handlers.utils import from_engine
from monai.utils import IgniteInfo, convert_to_tensor, min_version, optional_import

from monai_meep.calibration.base import Calibrator
from monai_meep.dist import get_rank, is_distributed

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["CalibratorFitHandler"]


class CalibratorFitHandler:
    """Stream ``(pred, label[, mask])`` of each iteration into ``calibrator``; fit and save at ``COMPLETED``.

    The state is reset at ``STARTED``, so a handler attached to a validator that runs every epoch refits on each
    run (the file then holds the last fit).

    Args:
        calibrator: an unfitted (or to-be-refitted) :class:`Calibrator`, e.g. ``PlattScaling(num_classes=2)``.
        save_path: JSON file to write on rank 0 (``None``: fit only, e.g. to use ``handler.calibrator`` directly).
        output_transform: maps ``engine.state.output`` to ``(pred, label)`` or ``(pred, label, mask)``; each element
            is a batched tensor ``(B, ...)`` or a list of channel-first items (MONAI's decollated output). ``None``
            reads ``"pred"`` and ``"label"`` (``from_engine(["pred", "label"])``); use it on an evaluator **without**
            post-processing so that ``pred`` holds the raw logits, or read a probability key with
            ``input_type="probs"``.
        input_type: overrides the calibrator's ``input_type`` (``"logits"`` / ``"probs"``).
        ignore_index: label value to leave out (e.g. WMH label 2, ``"other pathology"``), index targets only.
        name: logger name.

    Example::

        >>> cal = PlattScaling(num_classes=2)
        >>> CalibratorFitHandler(cal, save_path="models/calibrator_platt.json").attach(evaluator)
        >>> evaluator.run()  # then: CalibrateProbabilitiesd(keys="prob", calibrator="models/calibrator_platt.json")
    """

    def __init__(
        self,
        calibrator: Calibrator,
        save_path: str | os.PathLike | None = None,
        output_transform: Callable[[Any], Any] | None = None,
        input_type: str | None = None,
        ignore_index: int | None = None,
        name: str = "monai_meep.calibration",
    ) -> None:
        if not isinstance(calibrator, Calibrator):
            raise ValueError(f"calibrator must be a monai_meep Calibrator, got {type(calibrator).__name__}.")
        self.calibrator = calibrator
        self.save_path = None if save_path is None else Path(save_path)
        self.output_transform = from_engine(["pred", "label"]) if output_transform is None else output_transform
        self.input_type = None if input_type is None else Calibrator._check_input_type(input_type)
        self.ignore_index = ignore_index
        self.logger = logging.getLogger(name)
        self.saved_path: Path | None = None

    def attach(self, engine: Engine) -> None:
        """Register on ``STARTED`` (reset), ``ITERATION_COMPLETED`` (stream) and ``COMPLETED`` (fit + save)."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        self.calibrator.reset()

    def _update_one(self, pred: Any, label: Any, mask: Any, batched: bool) -> None:
        x = convert_to_tensor(pred, track_meta=False)
        y = convert_to_tensor(label, track_meta=False).to(x.device)
        m = None if mask is None else convert_to_tensor(mask, track_meta=False).to(x.device).bool()
        if not batched:
            x, y, m = x.unsqueeze(0), y.unsqueeze(0), None if m is None else m.unsqueeze(0)
        if self.ignore_index is not None:
            if y.ndim != x.ndim or y.shape[1] != 1:
                raise ValueError(f"ignore_index needs index labels (B, 1, *spatial), got {tuple(y.shape)}.")
            keep = y != self.ignore_index
            m = keep if m is None else m & keep
            y = torch.where(keep, y, torch.zeros_like(y))  # any valid label: the voxel is masked out anyway
        self.calibrator.update(x, y, m, input_type=self.input_type)

    def iteration_completed(self, engine: Engine) -> None:
        out = self.output_transform(engine.state.output)
        if not isinstance(out, Sequence) or len(out) not in (2, 3):
            raise ValueError("output_transform must return (pred, label) or (pred, label, mask).")
        pred, label = out[0], out[1]
        mask = out[2] if len(out) == 3 else None
        if isinstance(pred, (list, tuple)):  # decollated: one channel-first item per image (sizes may differ)
            masks = mask if isinstance(mask, (list, tuple)) else [None] * len(pred)
            if not (len(label) == len(pred) == len(masks)):
                raise ValueError(f"got {len(pred)} predictions, {len(label)} labels and {len(masks)} masks.")
            for p, y, m in zip(pred, label, masks, strict=True):
                self._update_one(p, y, m, batched=False)
        else:
            self._update_one(pred, label, mask, batched=True)

    def completed(self, engine: Engine) -> None:
        """Combine across ranks, fit, save on rank 0 (then a barrier, so every rank may read the file)."""
        self.calibrator.all_reduce()
        self.calibrator.fit()
        if self.save_path is not None and get_rank() == 0:
            self.saved_path = self.calibrator.save(self.save_path)
            self.logger.info(f"fitted {type(self.calibrator).__name__} saved to {self.saved_path}")
        if is_distributed():
            dist.barrier()
        if self.save_path is not None:
            self.saved_path = self.save_path
