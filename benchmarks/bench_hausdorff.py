# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Hausdorff / HD95 in mm: ``monai_meep.metrics.hausdorff_distance`` vs MONAI's ``HausdorffDistanceMetric``.

Two synthetic cases with the paper's geometry (deterministic, seed 0; nothing tuned for either method):

- ``wmh``: 256 x 256 x 64 at 1 x 1 x 3 mm, ~40 lesion-like ellipsoids (1-7 voxels in-plane, 1-3 slices) inside a
  brain-like ellipse; the "prediction" misses some lesions, adds false positives and perturbs the boundaries.
- ``la``: 144 x 144 x 80 at 0.625 mm isotropic, one large lumpy blob (an atrium-sized cavity) and a prediction
  with a shifted, perturbed boundary.

Both methods get the same tensors on ``--device`` (MONAI copies CUDA tensors to the CPU itself when cuCIM is absent).
Each timing is the median of ``--repeats`` runs after one warm-up, synchronised on CUDA. Run:

    python -m benchmarks.bench_hausdorff --device cpu      # or cuda

It prints a table and writes ``benchmarks/results/hausdorff_<device>_<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import monai
import torch
import torch.nn.functional as F
from monai.metrics import HausdorffDistanceMetric

from monai_meep.metrics.distance import hausdorff_distance

__all__ = ["make_wmh_case", "make_la_case", "run", "main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _smooth_noise(shape: tuple[int, ...], coarse: int, g: torch.Generator) -> torch.Tensor:
    """Low-frequency noise in [-1, 1]: coarse uniform noise upsampled trilinearly."""
    small = torch.rand((1, 1, *[max(2, s // coarse) for s in shape]), generator=g) * 2 - 1
    return F.interpolate(small, size=shape, mode="trilinear", align_corners=False)[0, 0]


def _grid(shape: tuple[int, ...]) -> list[torch.Tensor]:
    return list(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"))


def make_wmh_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]:
    """WMH-like (pred, gt) one-hot pair ``(1, 2, 256, 256, 64)`` with spacing 1 x 1 x 3 mm."""
    g = torch.Generator().manual_seed(seed)
    shape = (256, 256, 64)
    x, y, z = _grid(shape)
    brain = ((x - 128) / 100) ** 2 + ((y - 128) / 115) ** 2 + ((z - 32) / 28) ** 2 <= 1

    def lesions(n: int) -> torch.Tensor:
        out = torch.zeros(shape, dtype=torch.bool)
        for _ in range(n):
            c = [torch.randint(40, 216, (1,), generator=g).item(), torch.randint(30, 226, (1,), generator=g).item()]
            c.append(torch.randint(10, 54, (1,), generator=g).item())
            r = [1 + 6 * torch.rand(1, generator=g).item(), 1 + 6 * torch.rand(1, generator=g).item()]
            r.append(0.6 + 1.5 * torch.rand(1, generator=g).item())
            lo = [max(0, int(c[i] - r[i] - 1)) for i in range(3)]
            hi = [min(shape[i], int(c[i] + r[i] + 2)) for i in range(3)]
            sl = tuple(slice(lo[i], hi[i]) for i in range(3))
            d = sum(((v[sl] - c[i]) / r[i]) ** 2 for i, v in enumerate((x, y, z)))
            out[sl] |= d <= 1
        return out & brain

    gt = lesions(40)
    noise = _smooth_noise(shape, 4, g)
    # prediction: gt with perturbed boundary (grow / shrink by one voxel where the noise says so), misses, FPs
    grown = F.max_pool3d(gt[None, None].float(), 3, 1, 1)[0, 0].bool()
    shrunk = ~F.max_pool3d((~gt)[None, None].float(), 3, 1, 1)[0, 0].bool()
    pred = torch.where(noise > 0.3, grown, torch.where(noise < -0.3, shrunk, gt))
    pred = pred | lesions(6)  # false positives
    miss = lesions(8)
    pred = pred & ~miss
    return _onehot(pred), _onehot(gt), (1.0, 1.0, 3.0)


def make_la_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]:
    """LA-like (pred, gt) one-hot pair ``(1, 2, 144, 144, 80)`` with spacing 0.625 mm isotropic."""
    g = torch.Generator().manual_seed(seed)
    shape = (144, 144, 80)
    x, y, z = _grid(shape)
    ell = ((x - 72) / 42) ** 2 + ((y - 70) / 36) ** 2 + ((z - 40) / 26) ** 2
    gt = ell + 0.35 * _smooth_noise(shape, 12, g) <= 1
    ell_p = ((x - 74) / 41) ** 2 + ((y - 69) / 37) ** 2 + ((z - 41) / 25) ** 2
    pred = ell_p + 0.35 * _smooth_noise(shape, 12, g) <= 1
    # a small spurious blob, as networks produce
    pred |= ((x - 20) / 4) ** 2 + ((y - 120) / 4) ** 2 + ((z - 60) / 3) ** 2 <= 1
    return _onehot(pred), _onehot(gt), (0.625, 0.625, 0.625)


def _onehot(fg: torch.Tensor) -> torch.Tensor:
    fg = fg.float()[None, None]
    return torch.cat([1 - fg, fg], dim=1)


def _time(fn, device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    def once() -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0, out

    once()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t, out = once()
        times.append(t)
    return statistics.median(times), out


def run(device: str | torch.device = "cpu", repeats: int = 3) -> list[dict]:
    """Time and compare ours vs MONAI on both cases; one dict per (case, HD / HD95, our backend).

    On the CPU both our nearest-surface backends are timed (``kdtree``, the default there, and ``torch``, the
    pairwise path the GPU uses); on CUDA only ``torch``.
    """
    device = torch.device(device)
    backends = ("torch",) if device.type == "cuda" else ("kdtree", "torch")
    rows = []
    for case, maker in (("wmh 256x256x64 @1x1x3", make_wmh_case), ("la 144x144x80 @0.625", make_la_case)):
        pred, gt, spacing = maker(0)
        pred, gt = pred.to(device), gt.to(device)
        for percentile in (None, 95):
            monai_metric = HausdorffDistanceMetric(percentile=percentile, reduction="none")

            def theirs(pred=pred, gt=gt, spacing=spacing, metric=monai_metric):
                metric.reset()
                return metric(pred, gt, spacing=spacing)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_monai, v_monai = _time(theirs, device, repeats)
                for backend in backends:

                    def ours(pred=pred, gt=gt, spacing=spacing, percentile=percentile, backend=backend):
                        return hausdorff_distance(pred, gt, spacing=spacing, percentile=percentile, backend=backend)

                    t_ours, v_ours = _time(ours, device, repeats)
                    v_o, v_m = float(v_ours.flatten()[0]), float(v_monai.flatten()[0])
                    rows.append(
                        {
                            "case": case,
                            "metric": "HD" if percentile is None else f"HD{percentile}",
                            "device": str(device),
                            "backend": backend,
                            "gt_fg_voxels": int(gt[0, 1].sum()),
                            "pred_fg_voxels": int(pred[0, 1].sum()),
                            "ours_s": t_ours,
                            "monai_s": t_monai,
                            "speedup": t_monai / t_ours,
                            "ours_mm": v_o,
                            "monai_mm": v_m,
                            "abs_diff_mm": abs(v_o - v_m),
                        }
                    )
    return rows


def _versions(device: torch.device) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "cpu_threads": torch.get_num_threads(),
        "host": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'case':<24}{'metric':<7}{'backend':<8}{'ours ms':>10}{'MONAI ms':>11}{'speedup':>9}"
        f"{'ours mm':>11}{'MONAI mm':>11}{'|diff|':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ms = f"{r['ours_s'] * 1e3:>10.1f}{r['monai_s'] * 1e3:>11.1f}{r['speedup']:>8.1f}x"
        mm = f"{r['ours_mm']:>11.4f}{r['monai_mm']:>11.4f}{r['abs_diff_mm']:>10.1e}"
        lines.append(f"{r['case']:<24}{r['metric']:<7}{r['backend']:<8}{ms}{mm}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(device, repeats=args.repeats)
    info = _versions(device)
    print(
        f"Hausdorff in mm, {info['date']}, {device} ({info.get('gpu', info['host'])}), torch {info['torch']}, "
        f"MONAI {info['monai']}, {info['cpu_threads']} CPU threads"
    )
    print(format_table(rows))
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"hausdorff_{device.type}_{info['date'][:10]}.json"
        path.write_text(json.dumps({"benchmark": "hausdorff", **info, "rows": rows}, indent=2))
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
