# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Sliding-window inference throughput of the bundles' networks: a ``sw_batch_size`` x AMP sweep.

MONAI ``sliding_window_inference`` (roi 64^3, overlap 0.5, gaussian blending) of each bundle's default network
(MONAI ``UNet``, 3D, channels 16..256, strides 2 x 4; WMH: 2 input channels, LA: 1) on a WMH-sized volume
``256 x 256 x 64`` (batch 1), eval mode, ``torch.inference_mode``. Throughput is input voxels per second (Mvox/s).
The bundle default (``sw_batch_size`` 16 for WMH and 4 for LA on a GPU, AMP on) is reported as a fraction of the best
setting of the sweep (target >= 0.90). Anchor (measured 2026-11-28, one H200, torch 2.11, MONAI 1.6.1): 187 Mvox/s
at sw_batch 4, 797 Mvox/s at sw_batch 64. On the CPU a tiny smoke version runs (64 x 64 x 32 volume, roi 32^3, two
settings). Run::

    python -m benchmarks.bench_sliding_window --device cuda      # or cpu
"""

from __future__ import annotations

import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet

from benchmarks._common import device_quick_main, time_fn

__all__ = ["BUNDLE_DEFAULTS", "run"]

# the bundles' GPU defaults (bundles/*/configs/train.json: sw_batch_size, amp = torch.cuda.is_available())
BUNDLE_DEFAULTS = {
    "wmh_meep": {"in_channels": 2, "sw_batch_size": 16, "sw_batch_size_cpu": 8},
    "la_meep": {"in_channels": 1, "sw_batch_size": 4, "sw_batch_size_cpu": 2},
}
ANCHOR = "187 Mvox/s @ sw 4; 797 Mvox/s @ sw 64 (H200)"


def _network(in_channels: int, num_res_units: int = 0) -> torch.nn.Module:
    return UNet(3, in_channels, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
                num_res_units=num_res_units, norm="batch")  # fmt: skip


def run(device: str | torch.device = "cpu", quick: bool = False) -> list[dict]:
    """Throughput per (bundle, sw_batch_size, AMP); plus one row per bundle: default / best."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        size, roi = (256, 256, 64), (64, 64, 64)
        sw_batches = (4, 16, 64) if quick else (1, 4, 8, 16, 32, 64)
        amps = (False, True)
        reps = 2 if quick else 3
    else:
        size, roi, sw_batches, amps, reps = (64, 64, 32), (32, 32, 32), (2, 8), (False,), 1
    rows = []
    for bundle, cfg in BUNDLE_DEFAULTS.items():
        net = _network(cfg["in_channels"]).to(device).eval()
        x = torch.randn(1, cfg["in_channels"], *size, device=device)
        results = {}
        first_row = len(rows)
        for amp in amps:
            for sw in sw_batches:

                def infer(sw=sw, amp=amp, x=x, net=net):
                    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                        return sliding_window_inference(x, roi, sw, net, overlap=0.5, mode="gaussian")

                try:
                    t = time_fn(infer, device, reps, warmup=1, rounds=2 if cuda else 1)
                except torch.OutOfMemoryError:
                    continue
                mvox = x[0, 0].numel() / t / 1e6
                results[(sw, amp)] = mvox
                rows.append({
                    "benchmark": "sliding_window", "figure": f"{bundle} sw_batch {sw} {'bf16 AMP' if amp else 'fp32'} "
                    f"({'x'.join(map(str, size))}, roi {roi[0]})",
                    "value": mvox, "unit": "Mvox/s", "ratio": None, "anchor": ANCHOR if bundle == "wmh_meep" else "",
                    "target": "", "size": "x".join(map(str, size)), "roi": roi[0],
                })  # fmt: skip
        best = max(results.values()) if results else None
        for r in rows[first_row:]:
            r["ratio"] = r["value"] / best
        default_key = (cfg["sw_batch_size"] if cuda else cfg["sw_batch_size_cpu"], cuda)
        default = results.get(default_key)
        rows.append({
            "benchmark": "sliding_window", "figure": f"{bundle} bundle default (sw {default_key[0]}, "
            f"{'AMP' if default_key[1] else 'fp32'}) / best of sweep", "value": default, "unit": "Mvox/s",
            "ratio": (default / best) if (default and best) else None,
            "anchor": f"best {best:.3g} Mvox/s" if best else "",
            "target": ">= 0.90" if cuda else "(GPU figure)",
        })  # fmt: skip
    return rows


def _format_row(r: dict) -> str:
    v = "-" if r["value"] is None else f"{r['value']:.3g}"
    ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
    return f"{r['figure']:<60} {v:>10} {r['unit']}  {ratio}"


def main(argv: list[str] | None = None) -> list[dict]:
    return device_quick_main(__doc__, run, _format_row, argv)


if __name__ == "__main__":
    main()
