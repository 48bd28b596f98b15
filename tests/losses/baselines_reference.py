"""Float64 NumPy recomputation of the calibration-baseline losses, written from their papers' formulas (as
docs/baselines.md states them), with explicit loops over voxels, neighbours and bins -- not from the package."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch


def to_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def voxels(spatial: tuple[int, ...]):
    return itertools.product(*(range(n) for n in spatial))


def labels_and_valid(target: np.ndarray, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """An index map (B, 1, *spatial) -> labels (B, *spatial) and valid mask."""
    lab = target[:, 0].astype(np.int64)
    valid = np.ones(lab.shape, bool) if ignore_index is None else lab != ignore_index
    return lab, valid


def reduce(per_voxel: np.ndarray, valid: np.ndarray, reduction: str):
    per_voxel = np.where(valid, per_voxel, 0.0)
    if reduction == "none":
        return per_voxel[:, None]
    if reduction == "sum":
        return per_voxel.sum()
    return per_voxel.sum() / max(valid.sum(), 1)


def soft_target_ce(logits: np.ndarray, q: np.ndarray) -> np.ndarray:
    """-sum_k q_k log p_k per voxel, (B, *spatial)."""
    return -(q * np.log(softmax(logits))).sum(axis=1)


def ls_targets(lab: np.ndarray, n_cls: int, a: float) -> np.ndarray:
    q = np.zeros((lab.shape[0], n_cls, *lab.shape[1:]))
    for b in range(lab.shape[0]):
        for v in voxels(lab.shape[1:]):
            for k in range(n_cls):
                q[(b, k, *v)] = (1 - a) * (lab[(b, *v)] == k) + a / n_cls
    return q


def gaussian_kernel(dims: int, size: int, sigma: float, svls: bool) -> dict[tuple[int, ...], float]:
    """Offset -> weight: exp(-|d|^2 / 2 sigma^2) normalised; SVLS sets the centre to the sum of the others."""
    r = size // 2
    w = {d: math.exp(-sum(x * x for x in d) / (2 * sigma**2)) for d in itertools.product(range(-r, r + 1), repeat=dims)}
    total = sum(w.values())
    w = {d: v / total for d, v in w.items()}
    if svls:
        centre = (0,) * dims
        w[centre] = 1 - w[centre]
        total = sum(w.values())
        w = {d: v / total for d, v in w.items()}
    return w


def filtered_one_hot(lab, valid, n_cls, kernel, pad: str) -> np.ndarray:
    """sum_d w_d onehot(x + d) per channel; pad "replicate" clamps indices, "zeros" skips outside voxels."""
    spatial = lab.shape[1:]
    out = np.zeros((lab.shape[0], n_cls, *spatial))
    for b in range(lab.shape[0]):
        for v in voxels(spatial):
            for d, w in kernel.items():
                u = tuple(x + dx for x, dx in zip(v, d, strict=True))
                if pad == "replicate":
                    u = tuple(min(max(x, 0), n - 1) for x, n in zip(u, spatial, strict=True))
                elif any(x < 0 or x >= n for x, n in zip(u, spatial, strict=True)):
                    continue
                if valid[(b, *u)]:
                    out[(b, lab[(b, *u)], *v)] += w
    return out


def svls(logits, target, size=3, sigma=1.0, svls_kernel=True, ignore_index=None, reduction="mean"):
    x, (lab, valid) = to_np(logits), labels_and_valid(to_np(target), ignore_index)
    kernel = gaussian_kernel(x.ndim - 2, size, sigma, svls_kernel)
    q = filtered_one_hot(lab, valid, x.shape[1], kernel, "replicate")
    q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)  # renormalise over the channels
    return reduce(soft_target_ce(x, q), valid, reduction)


def ls_ce(logits, target, a=0.1, ignore_index=None, reduction="mean"):
    x, (lab, valid) = to_np(logits), labels_and_valid(to_np(target), ignore_index)
    return reduce(soft_target_ce(x, ls_targets(np.where(valid, lab, 0), x.shape[1], a)), valid, reduction)


def mbls(logits, target, margin=10.0, alpha=0.1, class_mean=True, ignore_index=None, reduction="mean"):
    x, (lab, valid) = to_np(logits), labels_and_valid(to_np(target), ignore_index)
    n_cls = x.shape[1]
    out = np.zeros(lab.shape)
    for b in range(lab.shape[0]):
        for v in voxels(lab.shape[1:]):
            z = [x[(b, k, *v)] for k in range(n_cls)]
            if not valid[(b, *v)]:
                continue
            ce = -z[lab[(b, *v)]] + math.log(sum(math.exp(t) for t in z))
            pen = sum(max(0.0, max(z) - t - margin) for t in z)
            out[(b, *v)] = ce + alpha * (pen / n_cls if class_mean else pen)
    return reduce(out, valid, reduction)


def nacl(logits, target, size=3, alpha=0.1, l1=True, ignore_index=None, reduction="mean"):
    """CE + alpha * mean_k d(tau_k, l_k), tau = 3x3 mean filter of the one-hot with zero padding."""
    x, (lab, valid) = to_np(logits), labels_and_valid(to_np(target), ignore_index)
    dims = x.ndim - 2
    r = size // 2
    kernel = {d: 1.0 / size**dims for d in itertools.product(range(-r, r + 1), repeat=dims)}
    tau = filtered_one_hot(lab, valid, x.shape[1], kernel, "zeros")
    q = np.zeros_like(x)
    for b in range(lab.shape[0]):
        for v in voxels(lab.shape[1:]):
            q[(b, lab[(b, *v)] if valid[(b, *v)] else 0, *v)] = 1.0
    ce = soft_target_ce(x, q)
    dist = np.abs(tau - x) if l1 else (tau - x) ** 2
    return reduce(ce + alpha * dist.mean(axis=1), valid, reduction)


def flsd(logits, target, ignore_index=None, reduction="mean"):
    x, (lab, valid) = to_np(logits), labels_and_valid(to_np(target), ignore_index)
    p = softmax(x)
    out = np.zeros(lab.shape)
    for b in range(lab.shape[0]):
        for v in voxels(lab.shape[1:]):
            py = p[(b, np.where(valid[(b, *v)], lab[(b, *v)], 0), *v)]
            gamma = 5.0 if py < 0.2 else 3.0
            out[(b, *v)] = -((1 - py) ** gamma) * math.log(py)
    return reduce(out, valid, reduction)


def ace(prob: np.ndarray, onehot: np.ndarray, valid: np.ndarray, num_bins=20, soft=False, empty=0.01) -> np.ndarray:
    """(B, C) mean over non-empty bins of |mean p - mean y|; hard: bin ceil(p M) - 1; soft: tent weights on the
    bin centres (m + 1/2) / M, the tails wholly in the edge bins."""
    n_b, n_c = prob.shape[:2]
    out = np.zeros((n_b, n_c))
    centres = [(m + 0.5) / num_bins for m in range(num_bins)]
    for b in range(n_b):
        for c in range(n_c):
            cnt, sp, sy = [0.0] * num_bins, [0.0] * num_bins, [0.0] * num_bins
            for v in voxels(prob.shape[2:]):
                if not valid[(b, *v)]:
                    continue
                p, y = prob[(b, c, *v)], onehot[(b, c, *v)]
                if soft:
                    pc = min(max(p, centres[0]), centres[-1])
                    weights = [max(0.0, 1 - num_bins * abs(pc - cm)) for cm in centres]
                else:
                    m = min(max(math.ceil(p * num_bins) - 1, 0), num_bins - 1)
                    weights = [float(j == m) for j in range(num_bins)]
                for m, w in enumerate(weights):
                    cnt[m] += w
                    sp[m] += w * p
                    sy[m] += w * y
            gaps = [abs(sp[m] - sy[m]) / cnt[m] for m in range(num_bins) if (cnt[m] >= empty if soft else cnt[m] > 0)]
            out[b, c] = sum(gaps) / len(gaps) if gaps else 0.0
    return out
