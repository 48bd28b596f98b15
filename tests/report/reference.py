# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""A float64 NumPy reference of the report's calibration metrics over all given voxels at once (no histogram)."""

from __future__ import annotations

import numpy as np


def binned(conf: np.ndarray, hit: np.ndarray, num_bins: int) -> dict[str, float]:
    """ECE / MCE / ACE of confidences ``conf`` against 0/1 outcomes ``hit``, uniform bins [k/K, (k+1)/K)."""
    b = np.minimum(np.floor(conf * num_bins).astype(int), num_bins - 1)
    n = np.bincount(b, minlength=num_bins).astype(float)
    gap = np.abs(np.bincount(b, conf, num_bins) - np.bincount(b, hit.astype(float), num_bins))
    nz = n > 0
    return {"ECE": gap.sum() / n.sum(), "MCE": (gap[nz] / n[nz]).max(), "ACE": (gap[nz] / n[nz]).mean()}


def reference(
    probs: np.ndarray, label: np.ndarray, num_bins: int, mode: str, include_background: bool, mask=None
) -> dict[str, float]:
    """Report columns of one volume (or of several concatenated along a spatial axis): ``probs`` ``(C, *)``."""
    p = probs.astype(np.float64).reshape(probs.shape[0], -1)
    if p.shape[0] == 1:
        p = np.concatenate([1 - p, p])
    y = label.reshape(-1).astype(int)
    if mask is not None:
        keep = mask.reshape(-1)
        p, y = p[:, keep], y[keep]
    c = p.shape[0]
    eps = np.finfo(probs.dtype).eps
    out = {"NLL": float(-np.log(np.maximum(p[y, np.arange(y.size)], eps)).mean())}
    bg = include_background and mode == "marginal"
    classes = list(range(0 if bg else 1, c))

    def put(name, values):
        if len(classes) == 1:
            out[name] = values[0]
        else:
            out.update({f"{name} [{k}]": v for k, v in zip(classes, values, strict=True)})
            out[f"{name} [mean]"] = float(np.nanmean(values))

    onehot = y[None] == np.arange(c)[:, None]
    put("Brier", [float(((p[k] - onehot[k]) ** 2).mean()) for k in classes])
    put("Brier+", [float(((1 - p[k][onehot[k]]) ** 2).mean()) if onehot[k].any() else np.nan for k in classes])
    if mode == "top_label":
        out.update(binned(p.max(0), p.argmax(0) == y, num_bins))
    else:
        per = [binned(p[k], onehot[k], num_bins) for k in classes]
        for name in ("ECE", "MCE", "ACE"):
            put(name, [d[name] for d in per])
    return out
