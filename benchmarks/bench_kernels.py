# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The Triton calibration-histogram kernel against the PyTorch paths, on the GPU, with an exactness check.

200 M voxels of a binary foreground probability (float32 ``U(0, 1)``, labels ``Bernoulli(p)`` stored as uint8) and
a confident case (95 % of the voxels below 1e-3 or above 1 - 1e-3, the shape of a trained network's output): the
kernel (:func:`monai_meep.kernels.triton_histogram`, counts / positives / float64 sums for ``[1 - p, p]``, 6000
sub-bins) vs a naive float64 ``bincount`` of the same three fields (anchor, one H200, 2026-11-28: 13.6 ms) and vs
``CalibrationHistogram.update`` (which also accumulates Brier / NLL / top-label). Floor: bytes read / 4.3 TB/s
(5 bytes a voxel: 0.23 ms). Reported with the largest relative difference of the sums and whether the int64 counts
are equal. Needs CUDA and triton (on the CPU the interpreter is far too slow to time): rows say so otherwise. Run::

    python -m benchmarks.bench_kernels --device cuda
"""

from __future__ import annotations

import torch

from benchmarks._common import device_quick_main, time_fn
from monai_meep.kernels import triton_available, triton_histogram

__all__ = ["run"]

S = 6000
BANDWIDTH = 4.3e12  # H200 device-to-device copy, bytes/s (measured 2026-11-28)


def _naive(p: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p64 = p.reshape(-1).double()
    p64 = torch.stack([1.0 - p64, p64])
    sub = (p64 * S).floor_().long().clamp_(0, S - 1) + torch.arange(2, device=p.device)[:, None] * S
    yl = y.reshape(-1).long()
    counts = torch.bincount(sub.reshape(-1), minlength=2 * S)
    sums = torch.bincount(sub.reshape(-1), p64.reshape(-1), minlength=2 * S)
    pos = torch.bincount(sub[yl, torch.arange(yl.numel(), device=p.device)], minlength=2 * S)
    return counts.view(2, S), pos.view(2, S), sums.view(2, S)


def _data(case: str, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    p = torch.rand(1, 1, n, device=device, generator=g)
    if case == "confident":
        sure = torch.rand(1, 1, n, device=device, generator=g) < 0.95
        p = torch.where(sure, torch.where(p < 0.5, p * 2e-3, 1 - (1 - p) * 2e-3), p)
    y = (torch.rand(1, 1, n, device=device, generator=g) < p).to(torch.uint8)
    return p, y


def run(device: str | torch.device = "cpu", quick: bool = False) -> list[dict]:
    """Histogram timings per case: kernel, naive float64 bincount, ``CalibrationHistogram.update``."""
    from monai_meep.metrics.histogram import CalibrationHistogram

    device = torch.device(device)
    if device.type != "cuda" or not triton_available(torch.empty(0, device=device)):
        return [{"benchmark": "kernels", "figure": "triton histogram, 200M voxels", "value": None, "unit": "ms",
                 "ratio": None, "anchor": "naive float64 bincount 13.6 ms", "target": "<= 1 ms",
                 "note": "not timed: needs triton and a CUDA device"}]  # fmt: skip
    n = 50_000_000 if quick else 200_000_000
    rows = []
    for case in ("uniform", "confident"):
        p, y = _data(case, n, device)
        ours = triton_histogram(p, y, 2, S)
        naive = _naive(p, y)
        same = all(torch.equal(a, b) for a, b in zip(ours[:2], naive[:2], strict=True))
        rel = float(((ours[2] - naive[2]).abs() / naive[2].abs().clamp(min=1e-300)).max())
        t_ours = time_fn(lambda p=p, y=y: triton_histogram(p, y, 2, S), device, reps=10)
        t_naive = time_fn(lambda p=p, y=y: _naive(p, y), device, reps=3, warmup=1, rounds=3)
        h = CalibrationHistogram(2, S, device=device)

        def full(h=h, p=p, y=y):
            h.update(p, y)

        t_full = time_fn(full, device, reps=1, warmup=1, rounds=3)
        floor_ms = p.numel() * 5 / BANDWIDTH * 1e3
        common = {"benchmark": "kernels", "unit": "ms", "voxels": n, "case": case}
        rows += [
            {**common, "figure": f"histogram {n / 1e6:.0f}M {case}: triton kernel", "value": t_ours * 1e3,
             "ratio": t_ours / t_naive, "anchor": "naive bincount 13.6 ms (200M)", "target": "<= 1 ms (200M)",
             "floor_ms": floor_ms, "counts_equal": same, "sums_max_rel_diff": rel},
            {**common, "figure": f"histogram {n / 1e6:.0f}M {case}: naive float64 bincount", "value": t_naive * 1e3,
             "ratio": 1.0, "anchor": "13.6 ms (200M)", "target": "", "floor_ms": floor_ms},
            {**common, "figure": f"histogram {n / 1e6:.0f}M {case}: CalibrationHistogram.update (PyTorch)",
             "value": t_full * 1e3, "ratio": t_full / t_naive, "anchor": "", "target": "", "floor_ms": floor_ms},
        ]  # fmt: skip
        del p, y
    return rows


def _format_row(r: dict) -> str:
    v = "-" if r["value"] is None else f"{r['value']:.3f} ms"
    return f"{r['figure']:<64} {v:>12}  {r.get('note', '')}"


def main(argv: list[str] | None = None) -> list[dict]:
    return device_quick_main(__doc__, run, _format_row, argv)


if __name__ == "__main__":
    main()
