# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Regenerate docs/figures/reliability_example.png and probability_histogram_example.png (synthetic data).

    python docs/figures/make_reliability_example.py

Synthetic, not a trained network: a smooth "true lesion probability" field ``q`` over a 96 x 96 x 48 volume (mostly
near 0, a few blobs), labels drawn as Bernoulli(q); the "over-confident" model predicts ``sigmoid(3 logit(q))``
(probabilities pushed to 0 and 1, like a network trained with Dice alone), the "calibrated" one predicts ``q``.
Deterministic (seed 0).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from monai_meep.metrics import CalibrationHistogram, calibration_error_from_histogram, reliability_curve_from_histogram
from monai_meep.visualize import plot_probability_histogram, plot_reliability_diagram

HERE = Path(__file__).resolve().parent


def main() -> None:
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, 1, 12, 12, 6, generator=g)
    field = F.interpolate(coarse, size=(96, 96, 48), mode="trilinear", align_corners=False)
    q = torch.sigmoid(4.0 * field - 4.0)  # mostly background, a few lesion-like blobs
    label = (torch.rand(q.shape, generator=g) < q).long()
    models = {"over-confident (synthetic)": torch.sigmoid(3.0 * torch.logit(q, eps=1e-6)), "calibrated (synthetic)": q}
    curves, eces, hists = {}, {}, {}
    for name, prob in models.items():
        h = CalibrationHistogram(num_classes=2)
        h.update(prob, label)
        curves[name] = reliability_curve_from_histogram(h, num_bins=10)
        eces[name] = float(calibration_error_from_histogram(h, num_bins=15)[0])  # the paper's 15-bin foreground ECE
        hists[name] = h
    plot_reliability_diagram(curves, ece=eces, save_path=HERE / "reliability_example.png")
    plot_probability_histogram(hists, num_bins=10, save_path=HERE / "probability_histogram_example.png")
    print({k: round(v, 5) for k, v in eces.items()})


if __name__ == "__main__":
    main()
