# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Ignite handlers for the calibration metrics: ECE / MCE / ACE, Brier (Brier+), NLL; per-image or pooled.

They build their :mod:`monai_meep.metrics` metric in ``__init__`` and work as ``key_val_metric`` /
``additional_metrics`` of MONAI's evaluators; per-image tables go to ``engine.state.metric_details`` for
``MetricsSaver``. An optional mask comes from the engine output: an ``output_transform`` that returns three items
``(y_pred, y, mask)`` (e.g. ``from_engine(["prob", "label", "mask"])``) scores only the mask's voxels; two items mean
no mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.handlers import IgniteMetricHandler
from monai.utils import IgniteInfo, MetricReduction, min_version, optional_import

from monai_meep.metrics.calibration_metric import (
    BrierScoreMetric,
    ExpectedCalibrationErrorMetric,
    NegativeLogLikelihoodMetric,
)

from .calibration_state import SharedCalibrationState

reinit__is_reduced, _ = optional_import(
    "ignite.metrics.metric", IgniteInfo.OPT_IMPORT_VERSION, min_version, "reinit__is_reduced", as_type="decorator"
)
Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")

__all__ = ["BrierScore", "ExpectedCalibrationError", "NegativeLogLikelihood"]


class _WholeOutput(Metric):
    """Ignite's ``Metric`` constructed with its public ``skip_unrolling=True`` (pytorch-ignite >= 0.5.1).

    MONAI's ``IgniteMetricHandler.__init__`` calls ``super().__init__(output_transform)`` without that argument; placed
    between it and ``Metric`` in the method resolution order, this class receives that call and adds the argument, so
    no private attribute of Ignite (``_skip_unrolling``) is set and MONAI's own initialisation runs unchanged.
    """

    def __init__(self, output_transform: Callable = lambda x: x, **kwargs: Any) -> None:
        super().__init__(output_transform, skip_unrolling=True, **kwargs)


class _MaskedMetricHandler(IgniteMetricHandler, _WholeOutput):
    """``IgniteMetricHandler`` whose ``update`` also accepts ``(y_pred, y, mask)``.

    Ignite unrolls decollated ``(y_pred, y)`` lists one image at a time and refuses three lists, so unrolling is
    switched off (``Metric(skip_unrolling=True)``, see :class:`_WholeOutput`): the metric receives the lists (or
    batch tensors) whole and handles them itself.
    """

    def __init__(
        self,
        metric_fn: Any,
        output_transform: Callable,
        save_details: bool,
        state: SharedCalibrationState | None = None,
    ) -> None:
        if state is not None and not isinstance(state, SharedCalibrationState):
            raise TypeError(f"state must be a SharedCalibrationState, got {type(state).__name__}.")
        self.shared_state = state
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    def attach(self, engine: Any, name: str) -> None:  # type: ignore[override]
        """MONAI's ``IgniteMetricHandler.attach``; a shared state is attached to the engine first."""
        if self.shared_state is not None:
            self.shared_state.attach(engine)
        super().attach(engine, name)

    @torch.no_grad()
    def iteration_completed(self, engine: Any) -> None:
        """Ignite's ``iteration_completed``; with a shared state, score the histograms the state built this iteration
        (read once for all its handlers) instead of reading ``engine.state.output`` again."""
        if self.shared_state is None:
            super().iteration_completed(engine)
            return
        self.metric_fn.accumulate(self.shared_state.read(engine))

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        """Args:
            output: ``(y_pred, y)`` or ``(y_pred, y, mask)``: batch-first tensors or lists of channel-first tensors.

        Raises:
            ValueError: when ``output`` does not have 2 or 3 items.
        """
        if not isinstance(output, Sequence) or len(output) not in (2, 3):
            n = len(output) if isinstance(output, Sequence) else type(output).__name__
            raise ValueError(f"output must be (y_pred, y) or (y_pred, y, mask), got {n} items.")
        mask = output[2] if len(output) == 3 else None
        self.metric_fn(output[0], output[1], mask=mask)


class ExpectedCalibrationError(_MaskedMetricHandler):
    """Ignite handler of :class:`~monai_meep.metrics.ExpectedCalibrationErrorMetric` (ECE and its variants).

    Args:
        num_bins, include_background, calibration_reduction, norm, mode, binning, pooled, reduction, ignore_index,
            check_sum: see :class:`~monai_meep.metrics.ExpectedCalibrationErrorMetric` (defaults: the paper's
            per-image foreground ECE with 15 uniform bins, averaged over images).
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)`` or ``(y_pred, y, mask)``; with MONAI's
            decollated dicts e.g. ``from_engine(["prob", "label"])``. ``y_pred`` must be probabilities.
        save_details: save the per-image table to ``engine.state.metric_details[name]`` (for ``MetricsSaver``).
        state: a :class:`~monai_meep.handlers.SharedCalibrationState` shared with the evaluator's other calibration
            handlers: the probabilities are then read once per iteration (by the state, with the state's
            ``output_transform``, ``ignore_index`` and ``check_sum``; leave this handler's at their defaults).
            ``None``: the handler reads ``output_transform`` itself and works alone.

    Example:
        >>> from monai.handlers import from_engine
        >>> handler = ExpectedCalibrationError(output_transform=from_engine(["prob", "label"]))
        >>> # evaluator = SupervisedEvaluator(..., key_val_metric={"val_ece": handler},
        >>> #     metric_cmp_fn=lambda current, best: current < best)
    """

    def __init__(
        self,
        num_bins: int = 15,
        include_background: bool = False,
        calibration_reduction: str = "expected",
        norm: str | None = None,
        mode: str = "marginal",
        binning: str = "uniform",
        pooled: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        ignore_index: int | None = None,
        check_sum: bool = True,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        state: SharedCalibrationState | None = None,
    ) -> None:
        metric_fn = ExpectedCalibrationErrorMetric(
            num_bins=num_bins,
            include_background=include_background,
            calibration_reduction=calibration_reduction,
            norm=norm,
            mode=mode,
            binning=binning,
            reduction=reduction,
            pooled=pooled,
            ignore_index=ignore_index,
            check_sum=check_sum,
            state=state,
        )
        super().__init__(metric_fn, output_transform, save_details, state)


class BrierScore(_MaskedMetricHandler):
    """Ignite handler of :class:`~monai_meep.metrics.BrierScoreMetric` (Brier, Brier+ with ``stratum="positive"``).

    Args:
        include_background, stratum, pooled, reduction, ignore_index, check_sum: see
            :class:`~monai_meep.metrics.BrierScoreMetric`.
        output_transform, save_details, state: see :class:`ExpectedCalibrationError`.

    Example:
        >>> from monai.handlers import from_engine
        >>> brier_plus = BrierScore(stratum="positive", output_transform=from_engine(["prob", "label"]))
    """

    def __init__(
        self,
        include_background: bool = False,
        stratum: str | None = None,
        pooled: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        ignore_index: int | None = None,
        check_sum: bool = True,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        state: SharedCalibrationState | None = None,
    ) -> None:
        metric_fn = BrierScoreMetric(
            include_background=include_background,
            stratum=stratum,
            reduction=reduction,
            pooled=pooled,
            ignore_index=ignore_index,
            check_sum=check_sum,
            state=state,
        )
        super().__init__(metric_fn, output_transform, save_details, state)


class NegativeLogLikelihood(_MaskedMetricHandler):
    """Ignite handler of :class:`~monai_meep.metrics.NegativeLogLikelihoodMetric`.

    Args:
        pooled, reduction, ignore_index, check_sum: see :class:`~monai_meep.metrics.NegativeLogLikelihoodMetric`.
        output_transform, save_details, state: see :class:`ExpectedCalibrationError`.

    Example:
        >>> from monai.handlers import from_engine
        >>> nll = NegativeLogLikelihood(pooled=True, output_transform=from_engine(["prob", "label", "mask"]))
    """

    def __init__(
        self,
        pooled: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        ignore_index: int | None = None,
        check_sum: bool = True,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        state: SharedCalibrationState | None = None,
    ) -> None:
        metric_fn = NegativeLogLikelihoodMetric(
            reduction=reduction, pooled=pooled, ignore_index=ignore_index, check_sum=check_sum, state=state
        )
        super().__init__(metric_fn, output_transform, save_details, state)
