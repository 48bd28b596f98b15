# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Temperature scaling: ``softmax(z / T)`` (one ``T`` for all classes) or ``sigmoid(z / T)``, fitted by NLL.

Streamed state, by layout:

- **binary and sigmoid** (2-channel softmax, sigmoid channels): the NLL depends on each voxel only through its
  one-dimensional (foreground / channel) logit, so a :class:`LogitHistogram` keeps every voxel exactly on a 0.01 grid
  (deterministic, summed across DDP ranks; see that module for the error bound).
- **multi-class softmax (C >= 3)**: the NLL of ``softmax(z / T)`` depends on the whole logit vector, which has no
  small summable statistic. The state is a fixed-size uniform sample of voxels, drawn by *bottom-k sampling*: every
  voxel gets an independent uniform key and the ``sample_size`` voxels with the smallest keys are kept. That is a
  uniform sample without replacement of everything streamed, in ``sample_size x (C + 2)`` numbers, and two samples
  merge exactly (keep the smallest keys of the union), which is how DDP ranks are combined. One scalar fitted on
  10^6 voxels has a relative standard error of order 10^-3.

The fit minimises the mean NLL over ``s = 1 / T``, where the NLL is convex, by Newton's method in float64 (the same
optimum as a full-batch float64 L-BFGS); ``s <= 0`` (anti-correlated logits) is reported as an error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from monai_meep.calibration.base import Calibrator, check_number
from monai_meep.calibration.logit_histogram import LogitHistogram
from monai_meep.dist import get_rank, is_distributed

__all__ = ["TemperatureScaling", "fit_inverse_temperature", "TEMPERATURE_RANGE"]

#: temperatures a saved map may hold; fitted ones are ~0.1-20, a value outside this range is a corrupt file.
TEMPERATURE_RANGE = (1e-4, 1e4)


def _newton_1d(fun, s0: float = 1.0, max_iter: int = 100, tol: float = 1e-14) -> tuple[float, int]:
    """Minimise a convex 1-D function given ``fun(s) -> (f, g, h)`` by damped Newton steps."""
    s = s0
    f, g, h = fun(s)
    it = 0
    for _ in range(max_iter):
        it += 1
        if h <= 0 or g * g / h < tol:
            break
        step, t = g / h, 1.0
        while t > 1e-12:
            fc, gc, hc = fun(s - t * step)
            if math.isfinite(fc) and fc <= f - 1e-4 * t * step * g:
                break
            t *= 0.5
        s, f, g, h = s - t * step, fc, gc, hc
    return s, it


def fit_inverse_temperature(
    x: np.ndarray, y: np.ndarray | None = None, w: np.ndarray | None = None, labels: np.ndarray | None = None
) -> tuple[float, dict[str, Any]]:
    """Minimise the mean NLL over ``s = 1/T``.

    Either binary/sigmoid points (``x`` logits ``(n,)``, ``y`` 0/1, ``w`` weights): NLL of ``sigmoid(s x)``; or
    softmax rows (``x`` logits ``(n, C)``, ``labels`` class indices ``(n,)``): NLL of ``softmax(s x)``.

    Returns:
        ``(s, info)``; info has the mean NLL at ``s = 1`` and at the optimum and the iteration count.

    Raises:
        ValueError: no data, a single class, or an optimum at ``s <= 0``.
    """
    if labels is None:
        x, y, w = (np.asarray(v, dtype=np.float64) for v in (x, y, w))
        if w.sum() <= 0:
            raise ValueError("cannot fit TemperatureScaling: no voxels were streamed (call update() first).")
        if w[y > 0.5].sum() == 0 or w[y <= 0.5].sum() == 0:
            raise ValueError("cannot fit TemperatureScaling: only one class present in the streamed labels.")
        w = w / w.sum()

        def fun(s: float) -> tuple[float, float, float]:
            z = s * x
            p = 0.5 * (1.0 + np.tanh(0.5 * z))
            return (
                float(np.sum(w * (np.logaddexp(0.0, z) - y * z))),
                float(np.sum(w * x * (p - y))),
                float(np.sum(w * x * x * p * (1.0 - p))),
            )

    else:
        x, labels = np.asarray(x, dtype=np.float64), np.asarray(labels, dtype=np.int64)
        if x.shape[0] == 0:
            raise ValueError("cannot fit TemperatureScaling: no voxels were streamed (call update() first).")
        if np.unique(labels).size < 2:
            raise ValueError(f"cannot fit TemperatureScaling: only class {int(labels[0])} present in the labels.")
        zy = x[np.arange(x.shape[0]), labels]

        def fun(s: float) -> tuple[float, float, float]:
            z = s * x
            zmax = z.max(axis=1, keepdims=True)
            e = np.exp(z - zmax)
            tot = e.sum(axis=1, keepdims=True)
            p = e / tot
            m1 = np.sum(p * x, axis=1)
            m2 = np.sum(p * x * x, axis=1)
            lse = zmax[:, 0] + np.log(tot[:, 0])
            return float(np.mean(lse - s * zy)), float(np.mean(m1 - zy)), float(np.mean(m2 - m1 * m1))

    nll_before = fun(1.0)[0]
    if fun(0.0)[1] >= 0:  # convex with non-negative slope at s = 0: the minimum over s > 0 is at T = inf
        raise ValueError(
            "cannot fit TemperatureScaling: the logits are not positively related to the labels (optimal 1/T <= 0)."
        )
    s, it = _newton_1d(fun)
    return s, {"nll_before": nll_before, "nll_after": fun(s)[0], "iterations": it}


class _BottomKSample:
    """Uniform fixed-size sample of rows (bottom-k keys); mergeable across workers."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = int(size), int(seed)
        self.reset()

    def reset(self) -> None:
        self.keys = self.rows = self.labels = None
        self.generators: dict[torch.device, torch.Generator] = {}
        self.seen = 0

    def _keys(self, n: int, device: torch.device) -> torch.Tensor:
        gen = self.generators.get(device)
        if gen is None:  # one stream per device and per DDP rank so that ranks draw independent keys
            rank = get_rank()
            gen = self.generators[device] = torch.Generator(device=device).manual_seed(self.seed + 1_000_003 * rank)
        return torch.rand(n, generator=gen, device=device, dtype=torch.float64)

    def update(self, rows: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``rows`` ``(N, C)`` with class ``labels`` ``(N,)``."""
        keys = self._keys(rows.shape[0], rows.device)
        self.seen += rows.shape[0]
        if self.keys is not None and self.keys.numel() >= self.size:
            keep = keys < self.keys.max()  # only voxels that can enter the sample are concatenated
            keys, rows, labels = keys[keep], rows[keep], labels[keep]
        self._merge(keys, rows.float(), labels.long())

    def _merge(self, keys: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor) -> None:
        if self.keys is not None:
            dev = self.keys.device
            keys = torch.cat([self.keys, keys.to(dev)])
            rows = torch.cat([self.rows, rows.to(dev)])
            labels = torch.cat([self.labels, labels.to(dev)])
        if keys.numel() > self.size:
            idx = torch.topk(keys, self.size, largest=False).indices
            keys, rows, labels = keys[idx], rows[idx], labels[idx]
        self.keys, self.rows, self.labels = keys, rows, labels

    def all_reduce(self, num_cols: int) -> None:
        if not is_distributed():
            return
        mine = (
            (self.keys.cpu(), self.rows.cpu(), self.labels.cpu(), self.seen)
            if self.keys is not None
            else (torch.zeros(0, dtype=torch.float64), torch.zeros(0, num_cols), torch.zeros(0, dtype=torch.long), 0)
        )
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        self.keys = self.rows = self.labels = None
        self.seen = 0
        for k, r, lab, n in gathered:  # the same order on every rank -> the same merged sample everywhere
            self._merge(k, r, lab)
            self.seen += n


class TemperatureScaling(Calibrator):
    """Temperature scaling: ``softmax(z / T)`` with one ``T`` for all classes, or ``sigmoid(z / T)`` per channel.

    From probabilities, ``z = log p`` (softmax; ``softmax(log p / T) = softmax(z / T)`` exactly, up to the clip of
    ``log p`` at ``-logit_clip``) or ``z = logit(p)`` clipped (sigmoid). ``T > 1`` softens over-confident outputs.

    Args:
        num_classes: channels of the network output.
        activation: ``"softmax"`` or ``"sigmoid"``.
        input_type: ``"logits"`` (default) or ``"probs"``.
        logit_clip: half-width of the logit grid / clip of ``log p`` and ``logit(p)``.
        num_bins: logit-grid bins (binary and sigmoid layouts).
        sample_size: voxels kept by the uniform sample (multi-class softmax).
        seed: seed of the sample's keys (rank-dependent under DDP).

    Example::

        >>> cal = TemperatureScaling(num_classes=3)
        >>> cal.update(val_logits, val_labels).fit().temperature
        1.8...
        >>> probs = cal(test_logits)
    """

    kind = "temperature"

    def __init__(
        self,
        num_classes: int,
        activation: str = "softmax",
        input_type: str = "logits",
        logit_clip: float = 30.0,
        num_bins: int = 6000,
        sample_size: int = 1_000_000,
        seed: int = 0,
    ) -> None:
        super().__init__(num_classes, activation, input_type, logit_clip)
        if sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, got {sample_size}.")
        self.num_bins, self.sample_size, self.seed = int(num_bins), int(sample_size), int(seed)
        self.uses_sample = self.mode == "multiclass"
        self.hist = LogitHistogram(self.num_tasks, clip=self.logit_clip, num_bins=self.num_bins)
        self.sample = _BottomKSample(self.sample_size, self.seed)
        self.temperature = 1.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_bins": self.num_bins, "sample_size": self.sample_size, "seed": self.seed}

    def _accumulate(self, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, input_type: str) -> None:
        if self.uses_sample:
            z = self.class_logits(x, input_type).clamp(-self.logit_clip, self.logit_clip)
            self.sample.update(self.flatten_voxels(z, mask).T, self.flatten_voxels(labels, mask)[0])
        else:
            z = self.flatten_voxels(self.task_logits(x, input_type), mask)
            self.hist.update(z, self.flatten_voxels(self.task_labels(labels), mask))

    def _fit(self) -> None:
        if self.uses_sample:
            if self.sample.keys is None or self.sample.keys.numel() == 0:
                raise ValueError("cannot fit TemperatureScaling: no voxels were streamed (call update() first).")
            s, info = fit_inverse_temperature(self.sample.rows.cpu().numpy(), labels=self.sample.labels.cpu().numpy())
            info.update(num_voxels=self.sample.seen, sample_size=int(self.sample.keys.numel()))
        else:
            # one T shared by every channel: pool the tasks' points
            s, info = fit_inverse_temperature(*self.hist.points(None))
            info.update(num_voxels=self.hist.total // self.num_tasks)
        self.temperature = 1.0 / s
        self.fit_info = info

    def _apply(self, x: torch.Tensor, input_type: str) -> torch.Tensor:
        z = self.class_logits(x, input_type) / self.temperature
        return torch.softmax(z, dim=1) if self.activation == "softmax" else torch.sigmoid(z)

    def _reset(self) -> None:
        self.hist.reset()
        self.sample.reset()

    def _all_reduce(self) -> None:
        if self.uses_sample:
            self.sample.all_reduce(self.num_classes)
        else:
            self.hist.all_reduce()

    def _params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def _load_params(self, params: dict[str, Any]) -> None:
        # T = 1e-300 loads as a positive number but z / T overflows and every output is NaN
        self.temperature = check_number(params.get("temperature"), "params 'temperature'", *TEMPERATURE_RANGE)
