# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Streaming, exact, bounded-memory accumulator behind every calibration metric of :mod:`monai_meep.metrics`.

:class:`CalibrationHistogram` keeps, per class, how many voxels fall in each of ``S`` uniform sub-bins of [0, 1], how
many of them carry that class's label, and the float64 sum of their probabilities; plus float64 sums for the Brier
score (all voxels and the positive stratum), the negative log-likelihood and a top-label (arg-max confidence)
histogram. Counts are int64 and sums float64, so results stay exact far past the 2**24 additions where float32
accumulators (MONAI 1.6's ``calibration_binning``, torchmetrics) stop counting. Memory is ``O(C * S)``, independent
of the number of voxels; inputs are processed in chunks so float64 temporaries stay bounded.

This module holds the state, its reductions and the update's checks and dispatch. The statistics are computed by
:mod:`._histogram_numba` on the CPU (one compiled pass over the whole update, when Numba is installed), else by
:mod:`._histogram_numpy` (CPU) or :mod:`._histogram_torch` (CUDA) chunk by chunk; the last two share their
validation and code-to-statistics step (:mod:`._histogram_common`), and the NumPy path words the compiled path's
errors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from monai_meep.dist import all_reduce_, is_distributed

from ._histogram_common import Accumulator, ChunkRules, Workspace
from ._histogram_numba import HAS_NUMBA, accumulate_numba
from ._histogram_numpy import accumulate_numpy
from ._histogram_torch import accumulate_torch
from .conventions import probability_sum_tolerance

__all__ = ["CalibrationHistogram", "DEFAULT_NUM_SUB_BINS"]

# 6000 = 2^4 * 3 * 5^3: divisible by 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, ... so the usual uniform bin counts
# (paper: 15 for ECE, 10 for reliability diagrams; MONAI's default 20) are exact unions of sub-bins; 1/6000 is also
# the resolution of adaptive bin edges and of the isotonic fit built on this histogram.
DEFAULT_NUM_SUB_BINS = 6000
# Voxels per chunk: the workspace is (3 C + 8) * 8 bytes per voxel of a chunk, allocated once per update; 2^18 was
# the fastest of 2^16..2^19 on a 2-core CPU. Fewer voxels per chunk for many classes keep it under WORKSPACE_BYTES.
DEFAULT_CHUNK_SIZE = 1 << 18
WORKSPACE_BYTES = 40 << 20

# CPU updates run the compiled single pass (:mod:`._histogram_numba`) when Numba is there and MONAI_MEEP_NUMBA is not
# "0", else the NumPy twin of the torch path (:mod:`._histogram_numpy`); tests also set "torch" to check the torch path
# (:mod:`._histogram_torch`, the one CUDA uses) on the CPU. Read at every update, so it can be patched.
_CPU_BACKEND = "numba" if HAS_NUMBA and os.environ.get("MONAI_MEEP_NUMBA", "1") != "0" else "numpy"
_INT_FIELDS = ("counts", "positives", "top_counts", "top_correct")
_FLOAT_FIELDS = ("prob_sums", "brier_sums", "brier_pos_sums", "nll_sum", "top_conf_sums")


def _flat(x: torch.Tensor, i: int, j: int, sl: slice) -> torch.Tensor:
    """``x[i:j, :, sl]`` of a ``(B, C, N)`` tensor as ``(C, (j - i) * len(sl))`` (a view when ``j - i == 1``)."""
    return x[i:j, :, sl].transpose(0, 1).reshape(x.shape[1], -1)


def _plain(x: Any) -> torch.Tensor:
    """Drop MONAI ``MetaTensor`` metadata (its operator overhead is large and useless here)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(x).__name__}.")
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def _check_state(st: Mapping[str, torch.Tensor]) -> None:
    """Refuse a state no sequence of updates can produce (a corrupt or hand-edited checkpoint).

    Negative counts gave ECE NaN and ``num_voxels`` -4096, positives above totals an ECE of 2.5.
    """
    for k in _INT_FIELDS:
        if bool((st[k] < 0).any()):
            raise ValueError(f"state[{k!r}] holds negative counts (min {int(st[k].min())}).")
    for k in _FLOAT_FIELDS:
        if not bool(torch.isfinite(st[k]).all()):
            raise ValueError(f"state[{k!r}] holds NaN or inf.")
        if bool((st[k] < 0).any()):
            raise ValueError(f"state[{k!r}] holds negative sums (min {float(st[k].min()):.4g}).")
    for part, whole in (("positives", "counts"), ("top_correct", "top_counts")):
        if bool((st[part] > st[whole]).any()):
            raise ValueError(f"state[{part!r}] exceeds state[{whole!r}] in some sub-bin; expected positives <= counts.")
    # a probability sum over n voxels is at most n (slack for float64 rounding)
    for s_key, n_key in (("prob_sums", "counts"), ("top_conf_sums", "top_counts")):
        if bool((st[s_key] > st[n_key].double() * (1 + 1e-9) + 1e-9).any()):
            raise ValueError(
                f"state[{s_key!r}] exceeds state[{n_key!r}]; a sum of probabilities over n voxels is <= n."
            )
    totals = st["counts"].sum(1)
    if bool((totals != totals[0]).any()) or int(st["top_counts"].sum()) != int(totals[0]):
        raise ValueError(
            f"state['counts'] rows sum to {totals.tolist()} and state['top_counts'] to "
            f"{int(st['top_counts'].sum())}; every voxel is counted once per class and once top-label."
        )


class CalibrationHistogram:
    """Per-class sub-bin histogram of probabilities, labels and scores, accumulated exactly over any number of voxels.

    Classes are mutually exclusive (softmax outputs, or a 1-channel sigmoid foreground probability when
    ``num_classes == 2``, which is expanded to ``[1 - p, p]``). For each class ``c`` and uniform sub-bin ``s`` of
    ``[0, 1]`` (``[s/S, (s+1)/S)``, the last bin closed) it holds:

    - ``counts[c, s]`` (int64): voxels whose ``p_c`` lies in sub-bin ``s``;
    - ``positives[c, s]`` (int64): of those, voxels labelled ``c``;
    - ``prob_sums[c, s]`` (float64): the sum of ``p_c`` over those voxels;
    - ``brier_sums[c]`` (float64): ``sum_i (p_ic - y_ic)^2`` over all voxels;
    - ``brier_pos_sums[c]`` (float64): the same over voxels labelled ``c`` only (Brier+);
    - ``nll_sum`` (float64, 0-dim): ``sum_i -log(max(p_{i,y_i}, eps))``, ``eps`` the machine epsilon of the input
      dtype (as scikit-learn's ``log_loss``) so a saturated softmax gives a large finite value, not ``inf``;
    - ``top_counts[s]`` / ``top_correct[s]`` (int64), ``top_conf_sums[s]`` (float64): the same histogram for the
      top-label confidence ``max_c p_c`` and whether the arg-max class (first one on ties) equals the label.

    Derived: ``num_voxels`` (``counts[0].sum()``) and ``class_counts`` (``positives.sum(1)``).

    Args:
        num_classes: number of mutually exclusive classes ``C`` (>= 2).
        num_sub_bins: ``S``, uniform sub-bins of [0, 1]; uniform ``num_bins`` reductions need ``S % num_bins == 0``.
        device: where the state lives. ``None``: follows the device of the first update (CPU until then).
        check_sum: check that multi-channel probabilities sum to 1 (within ``sum_tol``) at every voxel. Disable for
            per-class calibrated outputs that were not renormalised.
        sum_tol: absolute tolerance of that check for float32 / float64 input; half-precision input gets at least
            ``C * eps`` of its dtype (``probability_sum_tolerance``), as rounding each stored probability moves the sum.
        chunk_size: voxels processed at once by the NumPy and torch paths (at most; fewer for many classes); bounds
            their workspace memory. The compiled CPU path needs no workspace: it streams the whole input in one pass
            (see Notes).

    Notes:
        On the CPU, with Numba installed, an update is one compiled pass over the input as it comes (float32 /
        float64 probabilities; other dtypes in converted blocks), split into up to 16 parts run on
        ``torch.get_num_threads()`` threads; the parts depend only on the input size, so the state is the same bytes
        whatever the thread count. Its memory is the parts' private histograms (``3 (C + 1) S`` 8-byte words each,
        at most 32 MiB in all). The first update of a dtype pair compiles for a few seconds, cached on disk after.
        Set ``MONAI_MEEP_NUMBA=0`` to use the NumPy path instead.

    Example:
        >>> h = CalibrationHistogram(num_classes=2)
        >>> probs = torch.softmax(torch.randn(2, 2, 8, 8, 8), dim=1)
        >>> h = h.update(probs, torch.randint(0, 2, (2, 1, 8, 8, 8)))
        >>> int(h.num_voxels)
        1024
    """

    def __init__(
        self,
        num_classes: int,
        num_sub_bins: int = DEFAULT_NUM_SUB_BINS,
        device: torch.device | str | None = None,
        check_sum: bool = True,
        sum_tol: float = 1e-3,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2 (a sigmoid output is 2 classes), got {num_classes}.")
        if int(num_sub_bins) < 1:
            raise ValueError(f"num_sub_bins must be >= 1, got {num_sub_bins}.")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
        self.num_classes = int(num_classes)
        self.num_sub_bins = int(num_sub_bins)
        self.check_sum = bool(check_sum)
        self.sum_tol = float(sum_tol)
        self.chunk_size = int(chunk_size)
        self._follow_input = device is None
        self.device = torch.device("cpu" if device is None else device)
        self.reset()

    # ------------------------------------------------------------------ state
    def _zeros(self, device: torch.device) -> dict[str, torch.Tensor]:
        c, s = self.num_classes, self.num_sub_bins
        i64, f64 = dict(dtype=torch.int64, device=device), dict(dtype=torch.float64, device=device)
        return {
            "counts": torch.zeros(c, s, **i64),
            "positives": torch.zeros(c, s, **i64),
            "prob_sums": torch.zeros(c, s, **f64),
            "brier_sums": torch.zeros(c, **f64),
            "brier_pos_sums": torch.zeros(c, **f64),
            "nll_sum": torch.zeros((), **f64),
            "top_counts": torch.zeros(s, **i64),
            "top_correct": torch.zeros(s, **i64),
            "top_conf_sums": torch.zeros(s, **f64),
        }

    def reset(self) -> None:
        """Zero every count and sum (shapes and device unchanged)."""
        for k, v in self._zeros(self.device).items():
            setattr(self, k, v)

    @property
    def num_voxels(self) -> torch.Tensor:
        """int64 0-dim tensor: voxels accumulated so far (after masking)."""
        return self.counts[0].sum()

    @property
    def class_counts(self) -> torch.Tensor:
        """int64 ``(C,)``: accumulated voxels labelled with each class."""
        return self.positives.sum(1)

    def to(self, device: torch.device | str) -> CalibrationHistogram:
        """Move the state to ``device`` (in place) and return ``self``."""
        self.device = torch.device(device)
        for k in _INT_FIELDS + _FLOAT_FIELDS:
            setattr(self, k, getattr(self, k).to(self.device))
        return self

    def state_dict(self) -> dict[str, Any]:
        """A dict of cloned state tensors plus ``num_classes`` / ``num_sub_bins`` (checkpointable)."""
        out: dict[str, Any] = {k: getattr(self, k).clone() for k in _INT_FIELDS + _FLOAT_FIELDS}
        out.update(num_classes=self.num_classes, num_sub_bins=self.num_sub_bins)
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> CalibrationHistogram:
        """Restore a :meth:`state_dict`, checked whole before anything changes (a rejected state leaves this one as it
        was).

        Raises:
            TypeError: ``state`` is not a mapping, ``num_classes`` / ``num_sub_bins`` are not ints, or a field is
                not a tensor of the right kind (integer counts, floating sums).
            ValueError: a missing key (named), other class / sub-bin counts, a wrong shape, or counts that no
                update can produce: negative counts, positives above their counts, classes that saw different
                voxel totals, NaN / inf or negative sums, probability sums above their counts.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping from state_dict(), got {type(state).__name__}.")
        missing = [k for k in ("num_classes", "num_sub_bins", *_INT_FIELDS, *_FLOAT_FIELDS) if k not in state]
        if missing:
            raise ValueError(f"state lacks the key(s) {missing}; expected the output of state_dict().")
        for key in ("num_classes", "num_sub_bins"):
            if isinstance(state[key], bool) or not isinstance(state[key], int):
                raise TypeError(f"state[{key!r}] must be an int, got {state[key]!r} ({type(state[key]).__name__}).")
        if state["num_classes"] != self.num_classes or state["num_sub_bins"] != self.num_sub_bins:
            raise ValueError(
                f"state has num_classes={state['num_classes']}, num_sub_bins={state['num_sub_bins']}; this histogram "
                f"has num_classes={self.num_classes}, num_sub_bins={self.num_sub_bins}."
            )
        new = {}
        for k, z in self._zeros(self.device).items():
            v = state[k]
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"state[{k!r}] must be a torch.Tensor, got {type(v).__name__}.")
            if v.shape != z.shape:
                raise ValueError(f"state[{k!r}] has shape {tuple(v.shape)}, expected {tuple(z.shape)}.")
            integer = k in _INT_FIELDS
            ok = (
                (not v.is_floating_point() and not v.is_complex() and v.dtype != torch.bool)
                if integer
                else v.is_floating_point()
            )
            if not ok:
                kind = "an integer" if integer else "a floating"
                raise TypeError(f"state[{k!r}] must be {kind} tensor ({z.dtype}), got {v.dtype}.")
            new[k] = v.detach().to(device=self.device, dtype=z.dtype).clone()
        _check_state(new)
        for k, v in new.items():
            setattr(self, k, v)
        return self

    def clone(self) -> CalibrationHistogram:
        """A deep copy with the same configuration."""
        h = CalibrationHistogram(
            self.num_classes, self.num_sub_bins, self.device, self.check_sum, self.sum_tol, self.chunk_size
        )
        h._follow_input = self._follow_input
        return h.load_state_dict(self.state_dict())

    def merge(self, other: CalibrationHistogram) -> CalibrationHistogram:
        """Add ``other``'s counts and sums into this histogram (in place); returns ``self``."""
        if not isinstance(other, CalibrationHistogram):
            raise ValueError(f"can only merge a CalibrationHistogram, got {type(other).__name__}.")
        if (other.num_classes, other.num_sub_bins) != (self.num_classes, self.num_sub_bins):
            raise ValueError(
                f"cannot merge a histogram with num_classes={other.num_classes}, num_sub_bins={other.num_sub_bins} "
                f"into one with num_classes={self.num_classes}, num_sub_bins={self.num_sub_bins}."
            )
        for k in _INT_FIELDS + _FLOAT_FIELDS:
            getattr(self, k).add_(getattr(other, k).to(self.device))
        return self

    def all_reduce(self, group: Any = None) -> CalibrationHistogram:
        """Sum the state over all ranks of ``torch.distributed`` (in place; no-op when not initialised).

        Counts are int64, so the reduced counts equal a single-process run bit for bit; float64 sums agree to
        rounding (~1e-16 relative). Every rank must call it. With the NCCL backend, CPU state travels through the
        current CUDA device.
        """
        if not is_distributed(group):
            return self
        # two flat buffers (one per dtype) = two collective calls instead of nine
        for fields in (_INT_FIELDS, _FLOAT_FIELDS):
            flat = all_reduce_(torch.cat([getattr(self, k).reshape(-1) for k in fields]), group=group)
            offset = 0
            for k in fields:
                t = getattr(self, k)
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
        return self

    # ----------------------------------------------------------------- update
    def update(
        self,
        probs: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        ignore_index: int | None = None,
    ) -> CalibrationHistogram:
        """Accumulate a batch.

        Args:
            probs: ``(B, C, *spatial)`` probabilities in [0, 1] (``C == num_classes``), or ``(B, 1, *spatial)`` sigmoid
                foreground probabilities when ``num_classes == 2``.
            target: ``(B, 1, *spatial)`` integer-valued class indices or ``(B, num_classes, *spatial)`` one-hot.
            mask: optional boolean ``(B, 1, *spatial)``; only ``True`` voxels are accumulated.
            ignore_index: optional label (index targets only) whose voxels are skipped, like a mask. Labels are
                range-checked only where they are accumulated, so e.g. WMH label 2 may remain under the mask.

        Returns:
            ``self``. The state is only modified if the whole batch is valid.

        Raises:
            ValueError: shape mismatch; probabilities outside [0, 1], NaN / inf, or not summing to 1; labels that are
                not integers in ``[0, num_classes)``; a one-hot target that is not one-hot; a non-binary mask.
        """
        probs, target = _plain(probs), _plain(target)
        c = self.num_classes
        if probs.ndim < 2 or not torch.is_floating_point(probs):
            raise ValueError(
                f"probs must be a floating tensor (B, C, *spatial), got {probs.dtype} {tuple(probs.shape)}."
            )
        if probs.shape[1] not in ((1, c) if c == 2 else (c,)):
            expected = "2 (or 1 sigmoid foreground channel)" if c == 2 else str(c)
            raise ValueError(f"probs has {probs.shape[1]} channels (shape {tuple(probs.shape)}), expected {expected}.")
        b, spatial = probs.shape[0], probs.shape[2:]
        same_grid = target.ndim == probs.ndim and target.shape[0] == b and target.shape[2:] == spatial
        if not same_grid or target.shape[1] not in (1, c):
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match probs shape {tuple(probs.shape)}: expected "
                f"({b}, 1, {', '.join(map(str, spatial))}) class indices or ({b}, {c}, ...) one-hot."
            )
        onehot = target.shape[1] == c and c > 1
        if onehot and ignore_index is not None:
            raise ValueError("ignore_index applies to index-map targets (B, 1, *spatial); use a mask with one-hot.")
        if mask is not None:
            mask = _plain(mask)
            if mask.shape != (b, 1, *spatial):
                raise ValueError(
                    f"mask shape {tuple(mask.shape)} must be ({b}, 1, *spatial) for probs {tuple(probs.shape)}."
                )
            if mask.dtype != torch.bool:
                if ((mask != 0) & (mask != 1)).any():
                    raise ValueError("mask must be boolean (or contain only 0 / 1).")
                mask = mask != 0
        n = math.prod(spatial)
        p3 = probs.reshape(b, probs.shape[1], n)
        t3 = target.reshape(b, target.shape[1], n)
        m3 = None if mask is None else mask.reshape(b, 1, n)

        dev = probs.device
        if self._follow_input and self.device != dev and int(self.num_voxels) == 0:
            self.to(dev)
        # bf16 / fp16 softmax output must pass
        tol = probability_sum_tolerance(probs.dtype, probs.shape[1], self.sum_tol)
        rules = ChunkRules(onehot, ignore_index, tol if self.check_sum else None)
        delta = self._zeros(dev)
        backend = _CPU_BACKEND if dev.type == "cpu" else "torch"
        if backend == "numba":
            acc = {k: v.numpy() for k, v in delta.items()}  # views of delta
            if accumulate_numba(acc, p3, t3, m3, rules, c, self.num_sub_bins):
                self._add(delta)
                return self
            # some input is invalid (or Numba would not import): the NumPy path raises the error, or computes the update
            delta, backend = self._zeros(dev), "numpy"
        chunk = min(self.chunk_size, max(1024, WORKSPACE_BYTES // (8 * (3 * c + 8))))
        ws = Workspace(c, min(chunk, b * n), self.num_sub_bins, dev)
        # NumPy on the CPU (no OpenMP regions per op: see _histogram_numpy), torch elsewhere; same codes and stats
        accumulate: Accumulator
        if backend == "numpy":
            accumulate, acc = accumulate_numpy, {k: v.numpy() for k, v in delta.items()}  # views of delta
        else:
            accumulate, acc = accumulate_torch, delta
        # chunks over voxels of one image, or over whole images when several fit in one chunk
        for i, j, sl in self._chunks(b, n, chunk):
            p, t = _flat(p3, i, j, sl), _flat(t3, i, j, sl)
            m = None if m3 is None else _flat(m3, i, j, sl)[0]
            accumulate(acc, ws, p, t, m, rules)
        self._add(delta)
        return self

    def _add(self, delta: Mapping[str, torch.Tensor]) -> None:
        for key, v in delta.items():
            getattr(self, key).add_(v.to(self.device))

    @staticmethod
    def _chunks(b: int, n: int, chunk: int):
        """Yield ``(first image, last image + 1, voxel slice)``: voxel ranges of one image, or whole images when
        several fit in one chunk (so many small images do not mean many tiny chunks)."""
        per = max(1, chunk // max(n, 1))
        if per > 1:
            for i in range(0, b, per):
                yield i, min(b, i + per), slice(0, n)
            return
        for i in range(b):
            for k in range(0, n, chunk):
                yield i, i + 1, slice(k, min(n, k + chunk))

    # --------------------------------------------------------------- reductions
    def bin_statistics(
        self, num_bins: int, mode: str = "marginal", binning: str = "uniform"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Collapse the sub-bins into ``num_bins`` bins.

        Args:
            num_bins: number of bins.
            mode: ``"marginal"`` (one row per class, on ``p_c`` vs ``y == c``) or ``"top_label"`` (one row, on the
                arg-max confidence vs correctness).
            binning: ``"uniform"`` (equal width; needs ``num_sub_bins % num_bins == 0``) or ``"adaptive"``
                (equal mass per row, bin edges snapped to sub-bin edges: sub-bin ``s`` goes to bin
                ``floor(num_bins * voxels_below_s / N)``).

        Returns:
            ``(counts, hits, prob_sums, lower, upper)``, each ``(K, num_bins)`` with ``K = C`` (marginal) or 1:
            int64 voxel counts, int64 positives / correct voxels, float64 probability sums, and the float64 lower /
            upper bin edges (for adaptive bins: the edges of the outermost non-empty sub-bins, NaN for empty bins).
        """
        if int(num_bins) < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
        if mode == "marginal":
            cnt, hit, sm = self.counts, self.positives, self.prob_sums
        elif mode == "top_label":
            cnt, hit, sm = self.top_counts[None], self.top_correct[None], self.top_conf_sums[None]
        else:
            raise ValueError(f"mode must be 'marginal' or 'top_label', got {mode!r}.")
        k, s_bins, nb = cnt.shape[0], self.num_sub_bins, int(num_bins)
        if binning == "uniform":
            if s_bins % nb:
                raise ValueError(
                    f"num_bins={nb} does not divide num_sub_bins={s_bins}; build the histogram with a multiple of it."
                )
            w = s_bins // nb
            edges = torch.linspace(0.0, 1.0, nb + 1, dtype=torch.float64, device=cnt.device)
            return (
                cnt.view(k, nb, w).sum(-1),
                hit.view(k, nb, w).sum(-1),
                sm.view(k, nb, w).sum(-1),
                edges[:-1].expand(k, nb).clone(),
                edges[1:].expand(k, nb).clone(),
            )
        if binning != "adaptive":
            raise ValueError(f"binning must be 'uniform' or 'adaptive', got {binning!r}.")
        total = cnt.sum(1, keepdim=True)
        below = cnt.cumsum(1) - cnt
        assign = torch.div(below * nb, total.clamp(min=1), rounding_mode="floor").clamp_(max=nb - 1)
        out_cnt = torch.zeros(k, nb, dtype=torch.int64, device=cnt.device).scatter_add_(1, assign, cnt)
        out_hit = torch.zeros_like(out_cnt).scatter_add_(1, assign, hit)
        out_sm = torch.zeros(k, nb, dtype=torch.float64, device=cnt.device).scatter_add_(1, assign, sm)
        pos = torch.arange(s_bins, dtype=torch.float64, device=cnt.device).expand(k, s_bins)
        nonempty = cnt > 0
        big = torch.full((k, nb), math.inf, dtype=torch.float64, device=cnt.device)
        lower = big.scatter_reduce(1, assign, torch.where(nonempty, pos, math.inf), "amin") / s_bins
        upper = (-big).scatter_reduce(1, assign, torch.where(nonempty, pos + 1, -math.inf), "amax") / s_bins
        empty = out_cnt == 0
        return out_cnt, out_hit, out_sm, lower.masked_fill(empty, math.nan), upper.masked_fill(empty, math.nan)

    def __repr__(self) -> str:
        return (
            f"CalibrationHistogram(num_classes={self.num_classes}, num_sub_bins={self.num_sub_bins}, "
            f"num_voxels={int(self.num_voxels)}, device={self.device})"
        )
