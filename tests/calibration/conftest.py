"""Synthetic validation / test data for the calibrator tests (seeded, small: each file runs in seconds)."""

from __future__ import annotations

import pytest
import torch


def _binary(n: int, seed: int, sharpen: float, shift: float, shape=(2, 2)):
    """Labels ~ Bernoulli(sigmoid(z)); returned logits ``sharpen * z + shift`` (over-confident when sharpen > 1).

    Returns 2-channel softmax logits ``(B, 2, H, W)`` (background logit 0), index labels ``(B, 1, H, W)`` and the
    true foreground probabilities.
    """
    g = torch.Generator().manual_seed(seed)
    b, h = shape[0], n // (shape[0] * 100)
    z = torch.randn(b, 1, h, 100, generator=g, dtype=torch.float64) * 1.5
    p_true = torch.sigmoid(z)
    y = (torch.rand(b, 1, h, 100, generator=g, dtype=torch.float64) < p_true).long()
    fg = sharpen * z + shift
    logits = torch.cat([torch.zeros_like(fg), fg], dim=1).float()
    return logits, y, p_true


def _multiclass(n: int, seed: int, num_classes: int, sharpen: float):
    """Labels ~ Categorical(softmax(z)); returned logits ``sharpen * z`` ``(B, C, H, W)``; labels ``(B, 1, H, W)``."""
    g = torch.Generator().manual_seed(seed)
    h = n // (2 * 100)
    z = torch.randn(2, num_classes, h, 100, generator=g, dtype=torch.float64) * 1.5
    p = torch.softmax(z, dim=1)
    flat = p.movedim(1, -1).reshape(-1, num_classes)
    y = torch.multinomial(flat, 1, generator=g).reshape(2, h, 100).unsqueeze(1)
    return (sharpen * z).float(), y


@pytest.fixture
def binary_data():
    return _binary


@pytest.fixture
def multiclass_data():
    return _multiclass
