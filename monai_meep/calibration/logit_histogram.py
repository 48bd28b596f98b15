# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""A fine, summable histogram of one-dimensional logits per label: the streamed state of Platt / temperature scaling.

Why a histogram and not a sample: a segmentation validation set is 10^8-10^9 voxels with a rare foreground (WMH
lesions are ~0.1 % of the brain). A fixed-size uniform sample of 10^6 voxels would keep ~10^3 lesion voxels and
give a different fit per seed; the histogram keeps every voxel, in bounded memory (``num_tasks x 2 x num_bins``
int64 counts and float64 logit sums, 192 kB per task at the default 6000 bins), is deterministic, and merges across
batches and DDP ranks by plain summation (exact, order-independent counts). Each occupied (bin, label) cell enters
the fit as one point at the **mean logit of its voxels** with their count as weight. The NLL of a sigmoid map
``sigmoid(a z + b)`` has second derivative ``<= a^2 / 4`` in ``z``, so replacing each voxel by its cell mean changes
the total NLL by at most ``a^2 w^2 / 8`` per voxel (``w`` = bin width, 0.01 by default: ``1.25e-5 a^2``); the
fitted parameters move by far less than any statistical error at these voxel counts.

Logits beyond ``[-clip, clip]`` are counted at the clip value (``sigmoid(30) = 1 - 9e-14``: nothing is lost).
"""

from __future__ import annotations

import numpy as np
import torch

from monai_meep.dist import all_reduce_

__all__ = ["LogitHistogram"]


class LogitHistogram:
    """Per-task, per-label histogram of logits on a uniform grid over ``[-clip, clip]``.

    Args:
        num_tasks: number of independent one-dimensional streams (classes one-vs-rest, channels).
        clip: half-width of the logit range.
        num_bins: bins over ``[-clip, clip]``.

    Example::

        >>> h = LogitHistogram(1)
        >>> h.update(torch.tensor([[0.3, -2.0]]), torch.tensor([[True, False]]))
        >>> x, y, w = h.points(0)  # cell mean logits, labels (0/1), voxel counts
    """

    def __init__(self, num_tasks: int, clip: float = 30.0, num_bins: int = 6000) -> None:
        if num_tasks < 1 or num_bins < 2 or not clip > 0:
            raise ValueError(f"need num_tasks >= 1, num_bins >= 2, clip > 0; got {num_tasks}, {num_bins}, {clip}.")
        self.num_tasks, self.clip, self.num_bins = int(num_tasks), float(clip), int(num_bins)
        self.counts: torch.Tensor | None = None  # (T, 2, G) int64, allocated on the first batch's device
        self.sums: torch.Tensor | None = None  # (T, 2, G) float64

    def _alloc(self, device: torch.device) -> None:
        shape = (self.num_tasks, 2, self.num_bins)
        self.counts = torch.zeros(shape, dtype=torch.int64, device=device)
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)

    def reset(self) -> None:
        self.counts = self.sums = None

    @property
    def total(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum().item())

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add voxels: ``logits`` ``(num_tasks, N)`` (any float dtype), ``labels`` ``(num_tasks, N)`` bool."""
        if logits.ndim != 2 or logits.shape[0] != self.num_tasks or labels.shape != logits.shape:
            raise ValueError(
                f"expected logits and labels of shape ({self.num_tasks}, N), got {tuple(logits.shape)} and "
                f"{tuple(labels.shape)}."
            )
        if self.counts is None:
            self._alloc(logits.device)
        if logits.numel() == 0:
            return
        z = logits.to(torch.float64).clamp(-self.clip, self.clip)
        width = 2 * self.clip / self.num_bins
        idx = ((z + self.clip) / width).floor().long().clamp_(0, self.num_bins - 1)
        task = torch.arange(self.num_tasks, device=z.device).unsqueeze(1)
        flat = ((task * 2 + labels.long()) * self.num_bins + idx).reshape(-1)
        size = self.num_tasks * 2 * self.num_bins
        counts = torch.bincount(flat, minlength=size).view_as(self.counts)
        sums = torch.zeros(size, dtype=torch.float64, device=z.device).index_add_(0, flat, z.reshape(-1))
        self.counts += counts.to(self.counts.device)
        self.sums += sums.view_as(self.sums).to(self.sums.device)

    def merge(self, other: LogitHistogram) -> LogitHistogram:
        """Add another histogram with the same grid (e.g. from another worker)."""
        if (other.num_tasks, other.clip, other.num_bins) != (self.num_tasks, self.clip, self.num_bins):
            raise ValueError("cannot merge logit histograms with different tasks / clip / bins.")
        if other.counts is None:
            return self
        if self.counts is None:
            self._alloc(other.counts.device)
        self.counts += other.counts.to(self.counts.device)
        self.sums += other.sums.to(self.sums.device)
        return self

    def all_reduce(self) -> None:
        """Sum across DDP ranks; a rank that saw no data contributes zeros."""
        if self.counts is None:
            self._alloc(torch.device("cpu"))
        all_reduce_(self.counts)
        all_reduce_(self.sums)

    def points(self, task: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Occupied cells as float64 arrays ``(mean logit, label 0/1, count)``; ``task=None`` pools all tasks."""
        if self.counts is None:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        c = self.counts.cpu().numpy()
        s = self.sums.cpu().numpy()
        if task is not None:
            c, s = c[task : task + 1], s[task : task + 1]
        lab = np.broadcast_to(np.array([0.0, 1.0]).reshape(1, 2, 1), c.shape)
        occ = c > 0
        return s[occ] / c[occ], lab[occ].astype(np.float64), c[occ].astype(np.float64)
