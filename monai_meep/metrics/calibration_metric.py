# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""MONAI ``CumulativeIterationMetric`` classes for ECE / MCE / ACE, Brier (+ strata) and NLL: per-image and pooled.

Each call scores every image on its own (a small ``(B, K)`` table buffered like MONAI's metrics and gathered across
ranks by ``get_buffer``) and adds the image's :class:`~monai_meep.metrics.histogram.CalibrationHistogram` to a pooled
one, so ``aggregate()`` can return the per-image reduction (the paper's mean (std) tables) or the dataset-level value
(``pooled=True``: the histogram all-reduced across ranks). Both use the same code on the same histograms.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from monai.utils import MetricReduction, look_up_option

from .calibration import (
    CALIBRATION_NORMS,
    brier_score_from_histogram,
    calibration_error_from_histogram,
    negative_log_likelihood_from_histogram,
)
from .calibration_state import CalibrationState
from .conventions import (
    CalibrationConvention,
    CalibrationMode,
    Preset,
    Region,
    batch_region_mask,
    calibration_convention,
)
from .histogram import DEFAULT_NUM_SUB_BINS, CalibrationHistogram

__all__ = ["BrierScoreMetric", "ExpectedCalibrationErrorMetric", "NegativeLogLikelihoodMetric"]

_MONAI_REDUCTIONS = {"expected": "l1", "average": "average", "maximum": "max"}


def reduce_metric_table(data: torch.Tensor, reduction: MetricReduction | str) -> tuple[torch.Tensor, torch.Tensor]:
    """NaN-aware reduction of a ``(N, K)`` table with the semantics of ``monai.metrics.utils.do_metric_reduction``
    (mean over channels first, then over images, for ``"mean"``), but keeping the table's dtype: MONAI casts to
    float32, which would throw away the float64 accumulation. Returns ``(value, not_nans)``."""
    reduction = look_up_option(reduction, MetricReduction)
    nans = torch.isnan(data)
    not_nans = (~nans).to(data.dtype)
    if reduction == MetricReduction.NONE:
        return data, not_nans
    f = data.masked_fill(nans, 0)
    zero = torch.zeros((), dtype=data.dtype, device=data.device)

    def mean(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return torch.where(n > 0, x / n.clamp(min=1), zero)

    if reduction == MetricReduction.MEAN:
        per_image, n_img = mean(f.sum(1), not_nans.sum(1)), not_nans.sum(1)
        not_nans = (n_img > 0).sum(0).to(data.dtype)
        return mean(per_image.sum(0, keepdim=True), not_nans), not_nans  # shapes (1,) and () as MONAI
    if reduction == MetricReduction.SUM:
        return f.sum(), not_nans.sum()
    if reduction == MetricReduction.MEAN_BATCH:
        return mean(f.sum(0), not_nans.sum(0)), not_nans.sum(0)
    if reduction == MetricReduction.SUM_BATCH:
        return f.sum(0), not_nans.sum(0)
    if reduction == MetricReduction.MEAN_CHANNEL:
        return mean(f.sum(1), not_nans.sum(1)), not_nans.sum(1)
    return f.sum(1), not_nans.sum(1)  # SUM_CHANNEL


class _HistogramMetric(CumulativeIterationMetric):
    """Shared machinery: per-image histograms (of a :class:`~.calibration_state.CalibrationState`) -> ``(B, K)``
    rows, plus the state's pooled histogram.

    A metric built without ``state`` owns a private state and updates it on every call (it works alone). A metric
    given a shared ``state`` never updates it: the state's owner does (once per batch for all its metrics, see
    :class:`monai_meep.handlers.SharedCalibrationState`) and the metric scores the state's histograms in
    :meth:`accumulate`. Subclasses implement :meth:`_score` (histogram -> float64 ``(K,)``).
    """

    def __init__(
        self,
        include_background: bool,
        reduction: MetricReduction | str,
        get_not_nans: bool,
        pooled: bool,
        num_sub_bins: int,
        ignore_index: int | None,
        check_sum: bool,
        num_classes: int | None,
        metric_reduction: MetricReduction | str | None,
        state: CalibrationState | None = None,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.reduction = reduction if metric_reduction is None else metric_reduction
        self.get_not_nans = get_not_nans
        self.pooled = pooled
        if state is None:
            self.shared = False
            state = CalibrationState(num_classes, num_sub_bins, ignore_index, check_sum, owner=type(self).__name__)
        else:
            if not isinstance(state, CalibrationState):
                raise TypeError(f"state must be a CalibrationState, got {type(state).__name__}.")
            if ignore_index is not None or not check_sum:
                raise ValueError(
                    f"{type(self).__name__} reads a shared CalibrationState: set ignore_index / check_sum on the state."
                )
            if num_classes is not None and state.num_classes is not None and num_classes != state.num_classes:
                raise ValueError(f"num_classes={num_classes} but the shared state has {state.num_classes}.")
            self.shared = True
        self.state = state
        self.num_sub_bins = state.num_sub_bins
        self.ignore_index = state.ignore_index
        self.check_sum = state.check_sum
        self.num_classes = num_classes if num_classes is not None else state.num_classes
        self.reset()

    @property
    def histogram(self) -> CalibrationHistogram | None:
        """The state's pooled histogram on this rank (``None`` before any data)."""
        return self.state.histogram

    def reset(self) -> None:
        """Clear the per-image buffers, and the pooled histogram of a private state (a shared state is reset by its
        owner, once for all its metrics)."""
        super().reset()
        # Cumulative.__init__ calls reset() before our attributes exist
        if getattr(self, "state", None) is not None and not self.shared:
            self.state.reset()

    def _score(self, hist: CalibrationHistogram) -> torch.Tensor:
        raise NotImplementedError

    def score(self, hists: Sequence[CalibrationHistogram], num_classes: int | None = None) -> torch.Tensor:
        """The float64 ``(B, K)`` table of per-image histograms (``(0, K)`` for none)."""
        if hists:
            return torch.stack([self._score(h).reshape(-1) for h in hists])
        with warnings.catch_warnings():  # K from scoring an empty histogram, whose NaN warning means nothing here
            warnings.simplefilter("ignore")
            c = num_classes or (self.state.histogram.num_classes if self.state.histogram is not None else 2)
            k = self._score(self.state.new_histogram(c)).numel()
        return torch.empty((0, k), dtype=torch.float64)

    def accumulate(self, hists: Sequence[CalibrationHistogram] | None = None) -> torch.Tensor:
        """Score histograms of the shared state (default: its latest batch, :attr:`CalibrationState.images`) and add
        the rows to this metric's buffer. Returns the rows."""
        rows = self.score(self.state.images if hists is None else hists)
        self.extend(rows)
        return rows

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Score each image of a batch; returns float64 ``(B, K)``.

        Args:
            y_pred: ``(B, C, *spatial)`` probabilities, or ``(B, 1, *spatial)`` sigmoid foreground probability.
            y: ``(B, 1, *spatial)`` class indices or ``(B, C, *spatial)`` one-hot.
            mask: optional boolean ``(B, 1, *spatial)``.
        """
        self._refuse_shared()
        hists = self.state.update(y_pred, y, mask)
        out = self.score(hists, max(2, int(y_pred.shape[1])))
        return out.to(y_pred.device) if not hists else out

    def _refuse_shared(self) -> None:
        if self.shared:
            raise RuntimeError(
                f"{type(self).__name__} reads a shared CalibrationState: update the state (once per batch) and call "
                "accumulate() instead of calling the metric."
            )

    def extend(self, *data: Any) -> None:
        """MONAI's ``Cumulative.extend``, skipping an empty ``(0, K)`` table (MONAI's splits it into one bad row)."""
        if all(isinstance(d, torch.Tensor) and d.ndim >= 1 and d.shape[0] == 0 for d in data):
            return
        super().extend(*data)

    def _compute_list(  # type: ignore[override]
        self, y_pred: Sequence[torch.Tensor], y: Sequence[torch.Tensor] | None = None, mask: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        """Decollated (channel-first) lists; ``mask`` may be a list of ``(1, *spatial)`` tensors or a batch tensor."""
        self._refuse_shared()
        if y is None or len(y) != len(y_pred):
            raise ValueError(f"y_pred and y must be lists of the same length, got {len(y_pred)} and {len(y or [])}.")
        hists = self.state.update(list(y_pred), list(y), mask)
        return self.score(hists)

    def pooled_histogram(self) -> CalibrationHistogram:
        """A copy of the pooled histogram summed over all ranks (every rank must call this under DDP); see
        :meth:`CalibrationState.pooled_histogram`."""
        return self.state.pooled_histogram()

    def aggregate(  # type: ignore[override]
        self, reduction: MetricReduction | str | None = None, pooled: bool | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the per-image table, or the pooled value.

        Args:
            reduction: MONAI reduction (``"none"``, ``"mean"``, ``"sum"``, ``"mean_batch"``, ...), NaN-aware as
                MONAI's ``do_metric_reduction`` but in float64; defaults to ``self.reduction``. For pooled values it
                applies to a ``(1, K)`` table, so ``"mean"`` averages the classes and ``"mean_batch"`` / ``"none"``
                keep them.
            pooled: override ``self.pooled``.

        Returns:
            the reduced float64 value, or ``(value, not_nans)`` when ``get_not_nans``.
        """
        if self.pooled if pooled is None else pooled:
            data = self._score(self.pooled_histogram()).reshape(1, -1)
        else:
            data = self.get_buffer()
            if not isinstance(data, torch.Tensor):
                raise ValueError(
                    f"{type(self).__name__}: no data accumulated yet (call the metric before aggregate())."
                )
        f, not_nans = reduce_metric_table(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


class ExpectedCalibrationErrorMetric(_HistogramMetric):
    """Binned calibration error (ECE, MCE, RMSCE, ACE; marginal or top-label), per image and pooled.

    Definitions: :func:`monai_meep.metrics.calibration_error` and ``docs/metrics.md``. Arguments shared with MONAI 1.6's
    ``CalibrationErrorMetric`` (``num_bins``, ``include_background``, ``calibration_reduction``, ``metric_reduction``)
    mean the same and agree with it to float32 rounding away from bin edges; the defaults follow the paper
    (15 bins, foreground only) instead of MONAI's (20 bins, background included).

    Args:
        num_bins: number of bins (paper: 15).
        include_background: report class 0 (marginal mode).
        calibration_reduction: MONAI's names: ``"expected"`` (ECE), ``"average"`` (ACE), ``"maximum"`` (MCE).
        norm: our names, override ``calibration_reduction`` when given: ``"l1"``, ``"l2"``, ``"max"``, ``"average"``.
        mode: ``"marginal"`` (one column per reported class) or ``"top_label"`` (one column).
        binning: ``"uniform"`` or ``"adaptive"`` (equal mass).
        reduction: MONAI reduction of the ``(N, K)`` table (``metric_reduction`` is an alias, MONAI's name).
        get_not_nans: ``aggregate()`` also returns the number of non-NaN values.
        pooled: ``aggregate()`` returns the dataset-level value instead of reducing per-image values.
        num_sub_bins: histogram resolution; default 6000 (or a multiple of ``num_bins`` if 6000 is not).
        ignore_index: label whose voxels are not scored (index targets), e.g. 2 for WMH.
        check_sum: check that multi-channel probabilities sum to 1.
        num_classes: optional; otherwise read from the first input (1 channel = 2 classes).
        metric_reduction: alias of ``reduction``.
        region: the voxels scored (:class:`~monai_meep.metrics.Region`): ``"all"`` (default), ``"foreground"``
            (ground-truth foreground) or ``"boundary"`` (within ``band_mm`` of the ground-truth surface), built
            from ``y`` per image and combined with any ``mask`` given (:func:`~monai_meep.metrics.batch_region_mask`).
        band_mm: width of the boundary band in mm.
        spacing: default voxel size (mm) of the boundary band when a call passes none (``metric(y_pred, y,
            spacing=...)``, per image as MONAI's ``HausdorffDistanceMetric``); ``None``: a ``MetaTensor``'s affine.
        state: a :class:`~monai_meep.metrics.CalibrationState` shared with other metrics (a compute group): the
            metric then scores the state's histograms (:meth:`accumulate`) instead of reading the probabilities
            itself; ``ignore_index`` / ``check_sum`` / ``num_sub_bins`` are the state's, ``region`` must be
            ``"all"``. ``None`` (default): a private state, the metric works alone.

    The field's presets (``"meep"``, ``"mbls"``, ``"monai"``) are :meth:`from_convention`.

    Example:
        >>> metric = ExpectedCalibrationErrorMetric(num_bins=15)
        >>> probs = torch.softmax(torch.randn(2, 2, 16, 16), 1)
        >>> per_image = metric(probs, torch.randint(0, 2, (2, 1, 16, 16)))  # (2, 1): foreground ECE per image
        >>> mean_ece, pooled_ece = metric.aggregate(), metric.aggregate(pooled=True)
    """

    def __init__(
        self,
        num_bins: int = 15,
        include_background: bool = False,
        calibration_reduction: str = "expected",
        norm: str | None = None,
        mode: str = "marginal",
        binning: str = "uniform",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        pooled: bool = False,
        num_sub_bins: int | None = None,
        ignore_index: int | None = None,
        check_sum: bool = True,
        num_classes: int | None = None,
        metric_reduction: MetricReduction | str | None = None,
        region: Region | str = Region.ALL,
        band_mm: float = 2.0,
        spacing: Any = None,
        state: CalibrationState | None = None,
    ) -> None:
        if int(num_bins) < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
        self.region = look_up_option(region, Region)
        if not float(band_mm) > 0:
            raise ValueError(f"band_mm must be > 0, got {band_mm}.")
        self.band_mm = float(band_mm)
        self.spacing = spacing
        cal_red = str(calibration_reduction).lower()
        if cal_red not in _MONAI_REDUCTIONS:
            raise ValueError(f"calibration_reduction must be one of {sorted(_MONAI_REDUCTIONS)}, got {cal_red!r}.")
        if norm is not None and str(norm).lower() not in CALIBRATION_NORMS:
            raise ValueError(f"norm must be one of {sorted(CALIBRATION_NORMS)}, got {norm!r}.")
        mode = str(look_up_option(mode, CalibrationMode))
        if binning not in ("uniform", "adaptive"):
            raise ValueError(f"binning must be 'uniform' or 'adaptive', got {binning!r}.")
        self.num_bins = int(num_bins)
        self.norm = _MONAI_REDUCTIONS[cal_red] if norm is None else CALIBRATION_NORMS[str(norm).lower()]
        self.calibration_reduction = cal_red
        self.mode = mode
        self.binning = binning
        if state is not None:
            if self.region != Region.ALL or num_sub_bins is not None:
                raise ValueError(
                    "a metric reading a shared CalibrationState scores the state's histograms as they are: region must "
                    "be 'all' and num_sub_bins None (set num_sub_bins on the state)."
                )
            if binning == "uniform" and isinstance(state, CalibrationState) and state.num_sub_bins % self.num_bins:
                raise ValueError(
                    f"num_bins={num_bins} does not divide the shared state's num_sub_bins={state.num_sub_bins}."
                )
            num_sub_bins = getattr(state, "num_sub_bins", DEFAULT_NUM_SUB_BINS)
        elif num_sub_bins is None:
            num_sub_bins = DEFAULT_NUM_SUB_BINS
            if binning == "uniform" and num_sub_bins % self.num_bins:
                num_sub_bins = self.num_bins * max(1, DEFAULT_NUM_SUB_BINS // self.num_bins)
        elif binning == "uniform" and int(num_sub_bins) % self.num_bins:
            raise ValueError(f"num_sub_bins={num_sub_bins} must be a multiple of num_bins={num_bins}.")
        super().__init__(
            include_background, reduction, get_not_nans, pooled, num_sub_bins, ignore_index, check_sum, num_classes,
            metric_reduction, state,
        )  # fmt: skip

    @classmethod
    def from_convention(
        cls,
        convention: CalibrationConvention | Preset | str = Preset.MEEP,
        region: Region | str | None = None,
        num_bins: int | None = None,
        band_mm: float | None = None,
        mode: CalibrationMode | str | None = None,
        include_background: bool | None = None,
        **kwargs: Any,
    ) -> ExpectedCalibrationErrorMetric:
        """The metric of a named convention (:func:`~monai_meep.metrics.calibration_convention`).

        Args:
            convention: a preset name (``"meep"``, ``"mbls"``, ``"monai"``) or a
                :class:`~monai_meep.metrics.CalibrationConvention`.
            region, num_bins, band_mm, mode, include_background: override the preset's (preset names only).
            kwargs: the other arguments of the class (``norm``, ``reduction``, ``pooled``, ``spacing``,
                ``ignore_index``, ...).

        Raises:
            TypeError: ``convention`` is neither a name nor a ``CalibrationConvention``.
            ValueError: overrides together with a ``CalibrationConvention``.

        Example:
            >>> metric = ExpectedCalibrationErrorMetric.from_convention("mbls")  # top-label, GT foreground, 15 bins
            >>> metric.mode, str(metric.region), metric.num_bins
            ('top_label', 'foreground', 15)
        """
        overrides = dict(region=region, num_bins=num_bins, band_mm=band_mm, mode=mode,
                         include_background=include_background)  # fmt: skip
        if isinstance(convention, CalibrationConvention):
            if any(v is not None for v in overrides.values()):
                raise ValueError("overrides apply to a preset name; build the CalibrationConvention with them instead.")
            conv = convention
        elif isinstance(convention, str):
            conv = calibration_convention(convention, **overrides)
        else:
            raise TypeError(f"convention must be a preset name or a CalibrationConvention, got {convention!r}.")
        return cls(num_bins=conv.num_bins, include_background=conv.include_background, mode=conv.mode,
                   region=conv.region, band_mm=conv.band_mm, **kwargs)  # fmt: skip

    def _region(self, y: torch.Tensor, mask: torch.Tensor | None, spacing: Any, num_classes: int) -> Any:
        """``mask`` and-ed with the region's mask of ``y`` (``mask`` itself for ``region="all"``)."""
        if self.region == Region.ALL:
            return mask
        spacing = self.spacing if spacing is None else spacing
        region = batch_region_mask(y, self.region, spacing, self.band_mm, num_classes, self.ignore_index)
        if mask is None:
            return region
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(region.shape):
            raise ValueError(f"mask must have shape {tuple(region.shape)}, got {tuple(getattr(mask, 'shape', ()))}.")
        return region & (mask != 0).to(region.device)

    def _compute_tensor(  # type: ignore[override]
        self,
        y_pred: torch.Tensor,
        y: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        spacing: Any = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Score each image over ``mask`` and the metric's region; ``spacing`` (mm) for the boundary band."""
        if self.region != Region.ALL and isinstance(y, torch.Tensor) and isinstance(y_pred, torch.Tensor):
            if y.ndim != y_pred.ndim or y.shape[0] != y_pred.shape[0]:
                raise ValueError(f"y shape {tuple(y.shape)} does not match y_pred shape {tuple(y_pred.shape)}.")
            if y.shape[0] > 0:
                mask = self._region(y, mask, spacing, max(2, int(y_pred.shape[1])))
        return super()._compute_tensor(y_pred, y, mask=mask, **kwargs)

    def _compute_list(  # type: ignore[override]
        self, y_pred: Sequence[torch.Tensor], y: Sequence[torch.Tensor] | None = None, mask: Any = None,
        spacing: Any = None, **kwargs: Any,
    ) -> torch.Tensor:  # fmt: skip
        """Decollated lists; ``spacing`` is one for all images or one row per image."""
        if spacing is None or isinstance(spacing, (int, float)) or self.region != Region.BOUNDARY:
            return self._each(y_pred, y, mask, [spacing] * len(y_pred))
        rows = spacing.tolist() if isinstance(spacing, torch.Tensor) else list(spacing)
        if rows and isinstance(rows[0], (int, float)):  # one spacing for every image
            return self._each(y_pred, y, mask, [rows] * len(y_pred))
        if len(rows) != len(y_pred):
            raise ValueError(f"per-image spacing has {len(rows)} rows for {len(y_pred)} images.")
        return self._each(y_pred, y, mask, rows)

    def _each(self, y_pred: Sequence[torch.Tensor], y: Any, mask: Any, spacings: list[Any]) -> torch.Tensor:
        if y is None or len(y) != len(y_pred):
            raise ValueError(f"y_pred and y must be lists of the same length, got {len(y_pred)} and {len(y or [])}.")
        if mask is not None and len(mask) != len(y_pred):
            raise ValueError(f"mask must have one entry per image ({len(y_pred)}), got {len(mask)}.")
        out = []
        for i, (p, t) in enumerate(zip(y_pred, y, strict=True)):
            m = None if mask is None else torch.as_tensor(mask[i]).unsqueeze(0)
            p, t = torch.as_tensor(p).unsqueeze(0), torch.as_tensor(t).unsqueeze(0)
            out.append(self._compute_tensor(p, t, mask=m, spacing=spacings[i]))
        return torch.cat(out, 0)

    def _score(self, hist: CalibrationHistogram) -> torch.Tensor:
        return calibration_error_from_histogram(
            hist, self.num_bins, self.norm, self.mode, self.binning, self.include_background
        ).reshape(-1)


class BrierScoreMetric(_HistogramMetric):
    """Brier score per class (``stratum=None``), Brier+ (``"positive"``) or Brier- (``"negative"``); per image and
    pooled. Definitions: :func:`monai_meep.metrics.brier_score`. The paper's Brier / Brier+ are the per-image
    foreground values (the defaults, ``include_background=False``).

    Args:
        include_background: report class 0.
        stratum: ``None``, ``"positive"`` or ``"negative"``. An image without voxels of a class has a NaN Brier+
            for it (with a warning); ``reduction`` skips NaNs and ``get_not_nans`` counts them.
        reduction, get_not_nans, pooled, ignore_index, check_sum, num_classes, metric_reduction, state: see
            :class:`ExpectedCalibrationErrorMetric`.

    Example:
        >>> metric = BrierScoreMetric(stratum="positive")
        >>> _ = metric(torch.softmax(torch.randn(2, 2, 16, 16), 1), torch.randint(0, 2, (2, 1, 16, 16)))
        >>> brier_plus = metric.aggregate()
    """

    def __init__(
        self,
        include_background: bool = False,
        stratum: str | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        pooled: bool = False,
        ignore_index: int | None = None,
        check_sum: bool = True,
        num_classes: int | None = None,
        metric_reduction: MetricReduction | str | None = None,
        state: CalibrationState | None = None,
    ) -> None:
        if stratum not in (None, "positive", "negative"):
            raise ValueError(f"stratum must be None, 'positive' or 'negative', got {stratum!r}.")
        self.stratum = stratum
        # Brier needs no probability bins: a 1-sub-bin histogram keeps the state tiny
        super().__init__(
            include_background, reduction, get_not_nans, pooled, 1, ignore_index, check_sum, num_classes,
            metric_reduction, state,
        )  # fmt: skip

    def _score(self, hist: CalibrationHistogram) -> torch.Tensor:
        return brier_score_from_histogram(hist, self.include_background, self.stratum)


class NegativeLogLikelihoodMetric(_HistogramMetric):
    """Mean negative log-likelihood (nats) of the true class, per image (an ``(N, 1)`` table) and pooled.

    Definition: :func:`monai_meep.metrics.negative_log_likelihood`.

    Args:
        reduction, get_not_nans, pooled, ignore_index, check_sum, num_classes, metric_reduction, state: see
            :class:`ExpectedCalibrationErrorMetric`.

    Example:
        >>> metric = NegativeLogLikelihoodMetric(pooled=True)
        >>> _ = metric(torch.softmax(torch.randn(2, 3, 16, 16), 1), torch.randint(0, 3, (2, 1, 16, 16)))
        >>> nll = metric.aggregate()
    """

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        pooled: bool = False,
        ignore_index: int | None = None,
        check_sum: bool = True,
        num_classes: int | None = None,
        metric_reduction: MetricReduction | str | None = None,
        state: CalibrationState | None = None,
    ) -> None:
        super().__init__(
            True, reduction, get_not_nans, pooled, 1, ignore_index, check_sum, num_classes, metric_reduction, state
        )

    def _score(self, hist: CalibrationHistogram) -> torch.Tensor:
        return negative_log_likelihood_from_histogram(hist).reshape(1)
