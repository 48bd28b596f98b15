# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Platt scaling: ``q = sigmoid(a * logit + b)``, fitted by minimising the NLL of the streamed validation voxels.

The streamed state is a :class:`~monai_meep.calibration.logit_histogram.LogitHistogram` (every voxel counted on a
0.01-wide logit grid; see that module for why a histogram beats a sample here and for the binning error bound).
The fit is an exact weighted logistic regression in float64 by Newton's method with a backtracking line search
(2 parameters, convex problem: converges to machine precision in ~10 steps), i.e. the same optimum as scikit-learn's
``LogisticRegression(C=inf)`` on the binned points and, within the binning error, on the raw voxels.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monai_meep.calibration.base import Calibrator, check_number
from monai_meep.calibration.logit_histogram import LogitHistogram

__all__ = ["PlattScaling", "fit_logistic", "PLATT_LIMIT"]

#: largest |a| / |b| a saved Platt map may hold; fitted values are O(1)-O(10), far beyond this a file is corrupt.
PLATT_LIMIT = 1e6


def _nll(theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    z = theta[0] * x + theta[1]
    return float(np.sum(w * (np.logaddexp(0.0, z) - y * z)))


def fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, max_iter: int = 100, tol: float = 1e-12
) -> tuple[float, float, dict[str, Any]]:
    """Weighted 1-D logistic regression ``P(y=1|x) = sigmoid(a x + b)`` by Newton's method (float64, unpenalised).

    Args:
        x: inputs (logits), ``(n,)``.
        y: 0/1 labels, ``(n,)``.
        w: non-negative weights (voxel counts), ``(n,)``.
        max_iter: Newton iterations.
        tol: stop when the Newton decrement (squared, per unit weight) falls below it.

    Returns:
        ``(a, b, info)`` with ``info`` = iterations and the mean NLL before (``a=1, b=0``) and after.

    Raises:
        ValueError: no weight, one label only, or perfectly separated data (the NLL has no minimum).
    """
    x, y, w = (np.asarray(v, dtype=np.float64) for v in (x, y, w))
    total = w.sum()
    if total <= 0:
        raise ValueError("cannot fit Platt scaling: no voxels were streamed (call update() first).")
    pos, neg = w[y > 0.5].sum(), w[y <= 0.5].sum()
    if pos == 0 or neg == 0:
        raise ValueError(
            f"cannot fit Platt scaling: only one class present ({int(pos)} positive, {int(neg)} negative)."
        )
    xp, xn = x[(y > 0.5) & (w > 0)], x[(y <= 0.5) & (w > 0)]
    if xp.min() > xn.max() or xp.max() < xn.min():
        raise ValueError("cannot fit Platt scaling: the classes are perfectly separated by the logit (a -> inf).")
    w = w / total  # scale-free: the Hessian is O(1) whatever the voxel count
    theta = np.array([1.0, 0.0])
    f = _nll(theta, x, y, w)
    info: dict[str, Any] = {"nll_before": f}
    it = 0
    for _ in range(max_iter):
        it += 1
        z = theta[0] * x + theta[1]
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
        r = w * (p - y)
        s = w * p * (1.0 - p)
        g = np.array([np.sum(r * x), np.sum(r)])
        h = np.array([[np.sum(s * x * x), np.sum(s * x)], [np.sum(s * x), np.sum(s)]])
        step = np.linalg.solve(h + 1e-300 * np.eye(2), g)
        decrement = float(g @ step)
        if decrement < tol:
            break
        t = 1.0
        while t > 1e-12:  # backtracking (Armijo) keeps the iteration monotone far from the optimum
            cand = theta - t * step
            fc = _nll(cand, x, y, w)
            if fc <= f - 1e-4 * t * decrement:
                break
            t *= 0.5
        theta, f = cand, fc
    info.update(nll_after=f, iterations=it)
    return float(theta[0]), float(theta[1]), info


class PlattScaling(Calibrator):
    """Platt scaling ``q = sigmoid(a * l + b)`` of the (one-vs-rest) logit ``l``, one ``(a, b)`` per task.

    Binary (2-channel softmax or 1 sigmoid channel): ``l`` is the foreground logit (``z1 - z0`` or ``z``).
    Multi-class softmax: ``l_c = z_c - logsumexp_{k != c} z_k`` per class, calibrated one-vs-rest and renormalised
    to sum 1. Multi-label sigmoid: one independent map per channel. From probabilities, ``l = logit(p)`` clipped
    to ``[-logit_clip, logit_clip]``.

    Args:
        num_classes: channels of the network output.
        activation: ``"softmax"`` or ``"sigmoid"``.
        input_type: ``"logits"`` (default) or ``"probs"``.
        logit_clip: half-width of the logit grid (and clip of ``logit(p)``).
        num_bins: bins of the logit grid (width ``2 * logit_clip / num_bins``).

    Example::

        >>> cal = PlattScaling(num_classes=2)
        >>> for logits, label in val_loader_outputs:  # (B, 2, H, W, D), (B, 1, H, W, D)
        ...     cal.update(logits, label)
        >>> probs = cal.fit()(test_logits)
        >>> cal.save("models/calibrator_platt.json")
    """

    kind = "platt"

    def __init__(
        self,
        num_classes: int,
        activation: str = "softmax",
        input_type: str = "logits",
        logit_clip: float = 30.0,
        num_bins: int = 6000,
    ) -> None:
        super().__init__(num_classes, activation, input_type, logit_clip)
        self.num_bins = int(num_bins)
        self.hist = LogitHistogram(self.num_tasks, clip=self.logit_clip, num_bins=self.num_bins)
        self.a: list[float] = []
        self.b: list[float] = []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_bins": self.num_bins}

    def _accumulate(self, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, input_type: str) -> None:
        z = self.flatten_voxels(self.task_logits(x, input_type), mask)
        y = self.flatten_voxels(self.task_labels(labels), mask)
        self.hist.update(z, y)

    def _fit(self) -> None:
        if self.hist.total == 0:
            raise ValueError("cannot fit PlattScaling: no voxels were streamed (call update() first).")
        a, b, infos = [], [], []
        for t in range(self.num_tasks):
            try:
                at, bt, info = fit_logistic(*self.hist.points(t))
            except ValueError as e:
                raise ValueError(f"{e} [task {t} of {self.num_tasks}, {self.mode}]") from None
            if at <= 0:
                # a < 0 would invert the ranking of voxels (and the segmentation). The NLL is convex, so the best
                # map with a >= 0 lies on a = 0: the constant base rate, b = logit(mean label). A useless map, but
                # the constrained optimum, loadable, and said aloud.
                _, y, w = self.hist.points(t)
                rate = min(max(float((w * y).sum() / w.sum()), 1e-12), 1 - 1e-12)
                warnings.warn(
                    f"PlattScaling task {t}: the unconstrained fit has slope a={at:.4g} <= 0 (the logits are not "
                    f"positively related to the labels); using a = 0, the constant base rate {rate:.4g}.",
                    stacklevel=3,
                )
                at, bt = 0.0, math.log(rate / (1 - rate))
                info = {**info, "constrained": "a >= 0"}
            a.append(at)
            b.append(bt)
            infos.append(info)
        self.a, self.b = a, b
        self.fit_info = {"num_voxels": self.hist.total // self.num_tasks, "tasks": infos}

    def _apply(self, x: torch.Tensor, input_type: str) -> torch.Tensor:
        z = self.task_logits(x, input_type, clip=False)
        shape = (1, self.num_tasks) + (1,) * (x.ndim - 2)
        a = torch.tensor(self.a, dtype=z.dtype, device=z.device).view(shape)
        b = torch.tensor(self.b, dtype=z.dtype, device=z.device).view(shape)
        s = a * z + b
        if self.mode == "binary" and self.activation == "softmax":
            return torch.cat([torch.sigmoid(-s), torch.sigmoid(s)], dim=1)  # 1 - q without cancellation
        return self._task_output(torch.sigmoid(s), log_q=F.logsigmoid(s) if self.mode == "multiclass" else None)

    def _reset(self) -> None:
        self.hist.reset()

    def _all_reduce(self) -> None:
        self.hist.all_reduce()

    def _params(self) -> dict[str, Any]:
        return {"a": list(self.a), "b": list(self.b)}

    def _load_params(self, params: dict[str, Any]) -> None:
        a, b = params.get("a"), params.get("b")
        if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b) == self.num_tasks):
            raise ValueError(f"Platt parameters must be lists 'a', 'b' of length {self.num_tasks}, got {params!r}.")
        for i, v in enumerate(a):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"params 'a'[{i}] = {v!r}: a slope < 0 reverses the ranking of voxels.")
        # float32 holds |v| <= 3.4e38; far beyond PLATT_LIMIT a * z overflows and the outputs turn NaN. a = 0 (the
        # constant base rate) is what fit() gives when the data admit no positive slope.
        a = [check_number(v, f"params 'a'[{i}]", 0.0, PLATT_LIMIT) for i, v in enumerate(a)]
        b = [check_number(v, f"params 'b'[{i}]", -PLATT_LIMIT, PLATT_LIMIT) for i, v in enumerate(b)]
        self.a, self.b = a, b
