# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Paired statistics of two methods scored on the same cases: mean difference, bootstrap interval, Wilcoxon test.

Library code: the calibration report compares models with it (:mod:`monai_meep.report.compare`) and the paper's
Table 1 runner compares its rows (:mod:`monai_meep.apps.experiments.stats`). Values come as ``(seeds, subjects)``
arrays aligned pair by pair (one "seed" when there is one model per method):

- the **mean paired difference** (row minus reference) over all finite pairs;
- its **95 % bootstrap interval**: subjects resampled with replacement (the same subjects for every seed, so seeds
  stay paired), 10 000 resamples, percentile interval, fixed RNG seed (the numbers are reproducible);
- the **Wilcoxon signed-rank** p-value over the pairs (``scipy.stats.wilcoxon``, two-sided);
- the number of **seeds in which the row is better** (its per-model mean over subjects).

A difference is ``better`` or ``worse`` only when the interval excludes 0 on that side, else ``inconclusive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CONFIDENCE", "N_RESAMPLES", "RNG_SEED", "PairedDifference", "paired_difference"]

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
RNG_SEED = 0


@dataclass(frozen=True)
class PairedDifference:
    """One row-vs-reference comparison on one metric (values in the metric's table unit)."""

    n_pairs: int  # finite (seed, subject) pairs used
    n_seeds: int
    n_subjects: int
    n_dropped: int  # pairs left out: a value not finite
    mean_row: float
    mean_reference: float
    mean_difference: float  # row minus reference
    ci_low: float
    ci_high: float
    wilcoxon_p: float
    seeds_better: int  # seeds whose per-model mean is better for the row
    higher_is_better: bool
    verdict: str  # "better", "worse" or "inconclusive" (interval vs 0, in the metric's direction)


def _verdict(low: float, high: float, higher_is_better: bool) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "inconclusive"


def paired_difference(
    row: Any,
    reference: Any,
    higher_is_better: bool,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    rng_seed: int = RNG_SEED,
) -> PairedDifference:
    """Paired comparison of ``row`` with ``reference``, both ``(seeds, subjects)`` arrays aligned pair by pair.

    Args:
        row: values of the compared row, shape ``(S, N)``: seed ``s``, test subject ``n``.
        reference: the base row's values on the same pairs, same shape.
        higher_is_better: the metric's direction (DSC: True; HD, Brier, ECE: False).
        n_resamples: bootstrap resamples of the subjects.
        confidence: interval level.
        rng_seed: seed of the bootstrap's ``numpy.random.default_rng``.

    Returns:
        A :class:`PairedDifference`; with no finite pair every statistic is NaN and the verdict ``inconclusive``.

    Raises:
        ValueError: shapes differ or are not 2-D, or ``confidence`` / ``n_resamples`` out of range.

    Example:
        >>> import numpy as np
        >>> d = paired_difference(np.array([[0.5, 0.6, 0.7]]), np.array([[0.6, 0.7, 0.8]]), higher_is_better=False)
        >>> round(d.mean_difference, 6), d.verdict
        (-0.1, 'better')
    """
    a, b = np.asarray(row, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"row and reference must be (seeds, subjects) arrays of one shape, got {a.shape} and {b.shape}."
        )
    if not 0.0 < confidence < 1.0 or int(n_resamples) < 1:
        raise ValueError(f"confidence must be in (0, 1) and n_resamples >= 1, got {confidence}, {n_resamples}.")
    n_seeds, n_subjects = a.shape
    valid = np.isfinite(a) & np.isfinite(b)
    diff = np.where(valid, a - b, 0.0)
    n_pairs = int(valid.sum())
    nan = math.nan
    if n_pairs == 0:
        return PairedDifference(
            0, n_seeds, n_subjects, a.size, nan, nan, nan, nan, nan, nan, 0, higher_is_better, "inconclusive"
        )
    mean_diff = float(diff.sum() / n_pairs)
    # resample subjects (columns), the same for every seed: a seed's models stay paired with their subjects
    idx = np.random.default_rng(rng_seed).integers(0, n_subjects, size=(int(n_resamples), n_subjects))
    sums = diff[:, idx].sum(axis=(0, 2))
    counts = valid[:, idx].sum(axis=(0, 2))
    boot = sums[counts > 0] / counts[counts > 0]
    alpha = (1.0 - confidence) / 2.0
    low, high = (float(q) for q in np.quantile(boot, [alpha, 1.0 - alpha]))
    d = (a - b)[valid]
    if np.all(d == 0):
        p = 1.0  # identical on every pair: no evidence of a difference (scipy refuses an all-zero sample)
    else:
        from scipy.stats import wilcoxon

        p = float(wilcoxon(d).pvalue)
    better = 0
    for s in range(n_seeds):
        v = valid[s]
        if v.any():
            delta = float(a[s, v].mean() - b[s, v].mean())
            better += int(delta > 0 if higher_is_better else delta < 0)
    return PairedDifference(
        n_pairs=n_pairs,
        n_seeds=n_seeds,
        n_subjects=n_subjects,
        n_dropped=int(a.size - n_pairs),
        mean_row=float(a[valid].mean()),
        mean_reference=float(b[valid].mean()),
        mean_difference=mean_diff,
        ci_low=low,
        ci_high=high,
        wilcoxon_p=p,
        seeds_better=better,
        higher_is_better=higher_is_better,
        verdict=_verdict(low, high, higher_is_better),
    )
