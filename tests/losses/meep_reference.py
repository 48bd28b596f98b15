"""Float64 NumPy recomputation of the MEEP regularisers, written from the paper's Eqs. 1-2 as docs/losses.md states
them (not from the package)."""

from __future__ import annotations

import numpy as np
import torch


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def valid_mask(y: np.ndarray, n_classes: int, ignore_index: int | None) -> np.ndarray:
    """(B, *spatial) bool: MONAI's create_ignore_mask rule (index: y != ii; one-hot: channel ii or all-zero)."""
    if ignore_index is None:
        return np.ones((y.shape[0],) + y.shape[2:], dtype=bool)
    if y.shape[1] == 1:
        return y[:, 0] != ignore_index
    if 0 <= ignore_index < n_classes:
        return y[:, ignore_index] == 0
    return np.abs(y).sum(axis=1) != 0


def reference(
    logits: torch.Tensor,
    target: torch.Tensor | None,
    activation: str,
    kind: str,
    ignore_index: int | None = None,
) -> tuple[float, float]:
    """(regulariser, fraction of scored elements in the set) in float64.

    kind: "meep_entropy" / "meep_kl" on the misclassified set, "confidence_penalty" over every scored element.
    """
    z = _np(logits)
    n_classes = z.shape[1]
    if target is not None:
        y = _np(target)
        if y.ndim == z.ndim - 1:
            y = y[:, None]
        valid = valid_mask(y, n_classes, ignore_index)
    else:
        y = None
        valid = np.ones((z.shape[0],) + z.shape[2:], dtype=bool)
    if activation == "softmax":
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        values = -(p * logp).sum(axis=1) if kind != "meep_kl" else -np.log(n_classes) - logp.mean(axis=1)
        if kind == "confidence_penalty":
            selected = valid
        else:
            label = y[:, 0] if y.shape[1] == 1 else y.argmax(axis=1)
            selected = (z.argmax(axis=1) != label) & valid
    else:
        log_p = -np.logaddexp(0.0, -z)  # log sigmoid(z)
        log_q = -np.logaddexp(0.0, z)  # log (1 - sigmoid(z))
        if kind == "meep_kl":
            values = -np.log(2.0) - 0.5 * (log_p + log_q)
        else:
            values = -(np.exp(log_p) * log_p + np.exp(log_q) * log_q)
        valid_c = np.broadcast_to(valid[:, None], z.shape)
        if kind == "confidence_penalty":
            selected = valid_c
        else:
            if y.shape[1] == 1 and n_classes > 1:
                positive = y == np.arange(n_classes).reshape([1, n_classes] + [1] * (y.ndim - 2))
            else:
                positive = y > 0.5
            selected = ((1.0 / (1.0 + np.exp(-z)) > 0.5) != positive) & valid_c
    n_sel = int(selected.sum())
    n_valid = int(valid.sum()) * (n_classes if activation == "sigmoid" else 1)
    value = float(values[selected].sum() / n_sel) if n_sel else 0.0
    return value, n_sel / max(n_valid, 1)
