# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""One calibration accumulator per evaluator: :class:`SharedCalibrationState`, read once per engine iteration.

In an evaluator, ECE / MCE / Brier / Brier+ / NLL handlers and the reliability-diagram saver all need the same
per-image and pooled histograms of the same ``(prob, label[, mask])``. Give each of them the same
``SharedCalibrationState`` (``state=`` in Python, ``"state": "@calibration_state"`` in a bundle) and the
probabilities are validated and read once per iteration: the first handler to run at ``ITERATION_COMPLETED``
updates the state, the others score the histograms it built. Handlers given no state keep working alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from monai.utils import IgniteInfo, min_version, optional_import

from monai_meep.metrics.calibration_state import CalibrationState
from monai_meep.metrics.histogram import DEFAULT_NUM_SUB_BINS, CalibrationHistogram

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["SharedCalibrationState"]


class SharedCalibrationState(CalibrationState):
    """A :class:`~monai_meep.metrics.CalibrationState` bound to one Ignite engine: reset when an epoch starts, updated
    from ``engine.state.output`` at most once per iteration, whichever of its handlers asks first.

    Args:
        output_transform: maps ``engine.state.output`` to ``(prob, label)`` or ``(prob, label, mask)``: batch
            tensors or lists of channel-first images, e.g. ``monai.handlers.from_engine(["prob", "label", "mask"])``.
            The handlers given this state use it instead of their own.
        num_classes, num_sub_bins, ignore_index, check_sum: see :class:`~monai_meep.metrics.CalibrationState`.

    Handlers attach the state to their engine themselves (idempotent); listing it in ``val_handlers`` as well is
    harmless. A state serves one engine: attaching it to a second raises ``ValueError``.

    Example:
        >>> from monai.handlers import from_engine
        >>> from monai_meep.handlers import BrierScore, ExpectedCalibrationError, ReliabilityDiagramSaver
        >>> state = SharedCalibrationState(from_engine(["prob", "label"]), num_classes=2)
        >>> metrics = {"val_ece": ExpectedCalibrationError(state=state), "val_brier": BrierScore(state=state)}
        >>> saver = ReliabilityDiagramSaver("./eval", state=state)
        >>> # SupervisedEvaluator(..., additional_metrics=metrics, val_handlers=[saver]): one read per iteration
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Sequence[Any]] = lambda x: x,
        num_classes: int | None = None,
        num_sub_bins: int = DEFAULT_NUM_SUB_BINS,
        ignore_index: int | None = None,
        check_sum: bool = True,
    ) -> None:
        if not callable(output_transform):
            raise TypeError(f"output_transform must be callable, got {type(output_transform).__name__}.")
        super().__init__(num_classes, num_sub_bins, ignore_index, check_sum, owner="SharedCalibrationState")
        self.output_transform = output_transform
        self._engine: Any = None
        self._current = False  # updated during the current iteration

    def attach(self, engine: Engine) -> None:
        """Reset at ``EPOCH_STARTED`` and mark the state stale at ``ITERATION_STARTED`` (once per engine)."""
        if self._engine is engine:
            return
        if self._engine is not None:
            raise ValueError("a SharedCalibrationState serves one engine; build one state per evaluator.")
        self._engine = engine
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)

    def _epoch_started(self, engine: Engine) -> None:
        self.reset()
        self._current = False

    def _iteration_started(self, engine: Engine) -> None:
        self._current = False

    def read(self, engine: Engine) -> list[CalibrationHistogram]:
        """The per-image histograms of this iteration: the engine output is read and validated on the first call of
        the iteration, later calls return the same histograms."""
        if self._engine is not engine:
            raise ValueError("this SharedCalibrationState is not attached to this engine (call attach(engine) first).")
        if not self._current:
            out = self.output_transform(engine.state.output)
            if not isinstance(out, Sequence) or len(out) not in (2, 3):
                n = len(out) if isinstance(out, Sequence) else type(out).__name__
                raise ValueError(f"output_transform must give (prob, label) or (prob, label, mask), got {n} items.")
            self.update(out[0], out[1], out[2] if len(out) == 3 else None)
            self._current = True
        return self.images
