# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Ignite handler for the Hausdorff distance in mm, with the voxel spacing read from the ``MetaTensor`` headers.

MONAI's ``HausdorffDistance`` handler passes no ``spacing``, so its values are in voxels. This one reads each image's
spacing from the decollated predictions / labels (``MetaTensor.affine``, else ``meta["pixdim"]``) and passes it per
image to :class:`monai_meep.metrics.distance.HausdorffDistanceMMMetric`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from monai_meep.metrics.distance import HausdorffDistanceMMMetric

__all__ = ["HausdorffDistanceMM", "spacing_from_meta"]


def _one_spacing(x: Any, img_dim: int) -> list[float] | None:
    """Spacing of one channel-first image from its metadata, or ``None`` when it carries none."""
    if not isinstance(x, MetaTensor):
        return None
    affine = x.affine
    if affine is not None and affine.ndim == 2:
        eye = torch.eye(affine.shape[0], dtype=affine.dtype, device=affine.device)
        # MetaTensor defaults to an identity affine: treat that as "not set" unless a header pixdim says otherwise
        if not torch.equal(affine, eye):
            spacing = x.pixdim
            spacing = spacing.tolist() if isinstance(spacing, torch.Tensor) else list(spacing)
            return [float(s) for s in spacing[:img_dim]] if len(spacing) >= img_dim else None
    pixdim = x.meta.get("pixdim")
    if pixdim is not None:
        values = torch.as_tensor(pixdim, dtype=torch.float64).flatten().tolist()
        # NIfTI header layout: pixdim[0] is qfac, pixdim[1:4] are the voxel sizes
        if len(values) >= img_dim + 1:
            return [float(v) for v in values[1 : img_dim + 1]]
    return [1.0] * img_dim if affine is not None else None


def spacing_from_meta(
    y_pred: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor | Sequence[torch.Tensor] | None = None
) -> tuple[list[list[float]], bool]:
    """Per-image voxel spacing (mm) of decollated (or batched) ``MetaTensor`` inputs.

    The label's header is preferred (it is the ground truth's geometry), then the prediction's. A ``MetaTensor``
    whose affine is the default identity and which has no ``meta["pixdim"]`` gets 1 mm but counts as *missing*.

    Args:
        y_pred: list of channel-first images, or a batch-first tensor / batched ``MetaTensor``.
        y: the matching labels, same layout, or ``None``.

    Returns:
        ``(spacings, complete)``: one list of spatial spacings per image (1 mm where missing), and whether every image
        had a spacing in its metadata.

    Example:
        >>> t = MetaTensor(torch.zeros(1, 4, 4, 4), affine=torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0])))
        >>> spacing_from_meta([t])
        ([[1.0, 1.0, 3.0]], True)
    """

    def items(x: Any) -> list[Any]:
        if x is None:
            return []
        if isinstance(x, (list, tuple)):
            return list(x)
        return [x[i] for i in range(x.shape[0])]  # a batched MetaTensor gives each item its own metadata

    preds, labels = items(y_pred), items(y)
    img_dim = preds[0].ndim - 1 if preds else 3
    spacings, complete = [], True
    for i, p in enumerate(preds):
        found = None
        for src in ([labels[i]] if i < len(labels) else []) + [p]:
            found = _found_spacing(src, img_dim)
            if found is not None:
                break
        if found is None:
            complete = False
            found = [1.0] * img_dim
        spacings.append(found)
    return spacings, complete


def _found_spacing(x: Any, img_dim: int) -> list[float] | None:
    """Like :func:`_one_spacing` but ``None`` for the default identity affine without a header pixdim."""
    if not isinstance(x, MetaTensor):
        return None
    affine = x.affine
    is_default = affine is None or (
        affine.ndim == 2 and torch.equal(affine, torch.eye(affine.shape[0], dtype=affine.dtype, device=affine.device))
    )
    if is_default and x.meta.get("pixdim") is None:
        return None
    return _one_spacing(x, img_dim)


class HausdorffDistanceMM(IgniteMetricHandler):
    """Hausdorff distance (max or percentile) in mm per image and class, averaged as MONAI's handlers do.

    Use it like MONAI's ``HausdorffDistance`` handler (``key_val_metric`` / ``additional_metrics``, ``MetricsSaver``),
    on decollated post-processed outputs (binarised one-hot ``pred`` and ``label``). The voxel spacing comes from each
    label's (else prediction's) ``MetaTensor`` header; where none is found, 1 mm is used and a warning is given once.
    Lower is better: pair it with ``metric_cmp_fn=lambda cur, best: cur < best`` when used as a key metric.

    Args:
        include_background: whether to score channel 0. Defaults to ``False``.
        percentile: ``None`` for the maximum (paper HD), 95 for HD95.
        directed: only prediction-to-label distances.
        reduction: MONAI reduction over not-NaN values, default ``"mean"``.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-image values in ``engine.state.metric_details`` (for ``MetricsSaver``).
        spacing: fixed spacing for every image instead of the metadata (``None``: read the metadata).
        backend: nearest-surface search, see :func:`monai_meep.metrics.distance.hausdorff_distance`.

    Example:
        >>> from monai.handlers import from_engine
        >>> handler = HausdorffDistanceMM(percentile=95, output_transform=from_engine(["pred", "label"]))
        >>> handler.attach(evaluator, "val_hd95_mm")  # doctest: +SKIP
    """

    def __init__(
        self,
        include_background: bool = False,
        percentile: float | None = None,
        directed: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        spacing: Any = None,
        backend: str = "auto",
    ) -> None:
        metric_fn = HausdorffDistanceMMMetric(
            include_background=include_background,
            percentile=percentile,
            directed=directed,
            reduction=reduction,
            backend=backend,
        )
        self.spacing = spacing
        self._warned = False
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    def update(self, output: Sequence[torch.Tensor]) -> None:
        """Score one iteration's ``(y_pred, y)``, passing each image's spacing from its metadata."""
        if len(output) != 2:
            raise ValueError(f"output must have length 2 (y_pred, y), got {len(output)}.")
        y_pred, y = output
        if self.spacing is not None:
            self.metric_fn(y_pred, y, spacing=self.spacing)
            return
        spacings, complete = spacing_from_meta(y_pred, y)
        if not complete and not self._warned:
            warnings.warn(
                "HausdorffDistanceMM: no voxel spacing found in the MetaTensor metadata (affine / pixdim) of some "
                "images; using 1 mm for them, so those distances are in voxels.",
                stacklevel=2,
            )
            self._warned = True
        self.metric_fn(y_pred, y, spacing=spacings)
