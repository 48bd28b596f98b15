# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Every benchmark in one run: one table of each figure next to its anchor, its ratio and its floor, plus JSON.

Runs ``run()`` of ``bench_loss`` (regulariser cost: loss alone, LA training step), ``bench_loss_cpu`` (the CPU
regulariser kernel vs the reference, each against Dice alone), ``bench_kernels`` (Triton
histogram), ``bench_sliding_window`` (sw_batch x AMP sweep), ``bench_metrics`` (ECE / Brier over 1e8 voxels vs
torchmetrics / MONAI / netcal) and ``bench_hausdorff`` (HD / HD95 vs MONAI), each in turn; a benchmark that fails is
reported in the table and the JSON and does not stop the others. Anchors (measured 2026-11-28 on one H200 and on 2
CPU cores) and targets are those of issue 8. Writes ``benchmarks/results/run_<device>_<UTC date-time>.json`` with
the date, device, versions and every row. Run::

    python -m benchmarks.run --device cuda          # the GPU figures (benchmarks/gpu/run_gpu.sh does this)
    python -m benchmarks.run --device cpu --quick   # a small CPU version (ratios only; minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import platform
import traceback
from pathlib import Path
from typing import Any

import torch

__all__ = ["main", "summarise"]

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = (
    "bench_loss",
    "bench_loss_cpu",
    "bench_kernels",
    "bench_sliding_window",
    "bench_metrics",
    "bench_hausdorff",
)
# measured anchors (CPU: 2 cores, 100.7 M voxels, 3 classes; GPU: one H200, 200 M voxels)
METRIC_ANCHORS_CPU = {"torchmetrics": ("5.3 s @100.7M", ">= 5x ours"), "netcal": ("18.4 s @100.7M", ">= 15x ours"),
                      "monai": ("10.1 s @100.7M", ""),
                      "plain_read": ("np.add.reduce, same arrays", "ours <= 3x this (x ours >= 0.33)")}  # fmt: skip
METRIC_ANCHORS_GPU = {"torchmetrics": ("269 ms, 6.5 GiB @200M", ""), "ours": ("bincount 13.6 ms @200M", "<= 1 ms")}


def _kwargs(fn: Any, device: str, quick: bool) -> dict[str, Any]:
    """The arguments a benchmark's ``run`` accepts, sized for the device and ``--quick``."""
    params = inspect.signature(fn).parameters
    out: dict[str, Any] = {"device": device}
    if "quick" in params:
        out["quick"] = quick
    if "voxels" in params:
        out["voxels"] = (2e7 if quick else 2e8) if device.startswith("cuda") else (1e6 if quick else 1e8)
    if "repeats" in params and quick:
        out["repeats"] = 1
    if "repeat" in params:  # bench_metrics: the median of 3 timed calls per method (this VM is noisy), 1 when quick
        out["repeat"] = 1 if quick else 3
    return {k: v for k, v in out.items() if k in params}


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def summarise(name: str, rows: list[dict], device: str) -> list[dict]:
    """One table row per figure: ``figure, value, unit, anchor, ratio, ratio_of, floor, target`` (+ a check)."""
    out = []
    for r in rows:
        if "error" in r and "figure" not in r:
            out.append({"figure": f"{name}: {r.get('case', '')} {r.get('method', '')}".strip(), "value": None,
                        "unit": "", "anchor": "", "ratio": None, "ratio_of": "", "floor": None, "target": "",
                        "check": f"FAILED: {str(r['error'])[:60]}"})  # fmt: skip
        elif name in ("bench_loss", "bench_loss_cpu", "bench_kernels", "bench_sliding_window"):
            check = ""
            if "counts_equal" in r:
                check = f"counts equal: {r['counts_equal']}, sums rel {r['sums_max_rel_diff']:.1e}"
            of = {"bench_loss": "x Dice alone", "bench_loss_cpu": "x Dice alone (same run)",
                  "bench_kernels": "x naive bincount", "bench_sliding_window": "of best"}  # fmt: skip
            out.append({"figure": r["figure"], "value": r["value"], "unit": r["unit"], "anchor": r.get("anchor", ""),
                        "ratio": r.get("ratio"), "ratio_of": of[name], "floor": r.get("floor_ms"),
                        "target": r.get("target", ""), "check": check or r.get("note", "")})  # fmt: skip
        elif name == "bench_metrics":
            anchors = METRIC_ANCHORS_GPU if device.startswith("cuda") else METRIC_ANCHORS_CPU
            anchor, target = anchors.get(r.get("method", ""), ("", ""))
            err = r.get("ece_abs_err", r.get("ece_marginal_max_abs_err"))
            out.append(
                {
                    "figure": f"ECE {r.get('case')} {r.get('method')} ({r.get('voxels', 0):.3g} vox, "
                    f"{r.get('device', device)})",
                    "value": r.get("time_s", 0) * 1e3,
                    "unit": "ms",
                    "anchor": anchor,
                    "ratio": r.get("time_ratio_vs_ours"),
                    "ratio_of": "x ours",
                    "floor": None,
                    "target": target,
                    "check": f"|dECE| {_fmt(err, '.1e')}, peak {_fmt(r.get('peak_extra_mb'), '.0f')} MB",
                }
            )
        elif name == "bench_hausdorff":
            anchor = "MONAI 1.76 s (256x256x64)" if "wmh" in str(r.get("case", "")) else ""
            out.append(
                {
                    "figure": f"{r.get('metric')} {r.get('case')} ({r.get('backend')}, {r.get('device')})",
                    "value": r.get("ours_s", 0) * 1e3,
                    "unit": "ms",
                    "anchor": anchor,
                    "ratio": r.get("speedup"),
                    "ratio_of": "MONAI / ours",
                    "floor": None,
                    "target": ">= 50x (GPU)",
                    "check": f"|diff| {_fmt(r.get('abs_diff_mm'), '.1e')} mm",
                }
            )
        else:
            out.append({"figure": f"{name}: {r}", "value": None, "unit": "", "anchor": "", "ratio": None,
                        "ratio_of": "", "floor": None, "target": "", "check": ""})  # fmt: skip
    return out


def format_table(summary: list[dict]) -> str:
    head = (
        f"{'figure':<72}{'value':>11} {'unit':<7}{'ratio':>8} {'(ratio of)':<15}{'floor':>7}  {'anchor':<34}"
        f"{'target':<16}check"
    )
    lines = [head, "-" * len(head)]
    for s in summary:
        lines.append(
            f"{s['figure'][:72]:<72}{_fmt(s['value'], '.4g'):>11} {s['unit']:<7}{_fmt(s['ratio'], '.3f'):>8} "
            f"{s['ratio_of']:<15}{_fmt(s['floor'], '.3g'):>7}  {s['anchor'][:34]:<34}{s['target']:<16}{s['check']}"
        )
    return "\n".join(lines)


def _versions(device: str) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "monai", "triton", "monai_meep", "numpy", "torchmetrics", "netcal"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:
            out[mod] = "not installed"
    out["cuda"] = torch.version.cuda
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    out["cpu_count"] = os.cpu_count()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes / fewer repeats")
    parser.add_argument("--only", nargs="*", default=None, help=f"a subset of {BENCHMARKS}")
    parser.add_argument("--voxels", type=float, default=None, help="voxels for bench_metrics (default by device)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False.")
    started = datetime.datetime.now(datetime.timezone.utc)
    report: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "device": args.device,
        "quick": args.quick,
        "versions": _versions(args.device),
        "rows": {},
        "errors": {},
    }
    summary: list[dict] = []
    for name in args.only or BENCHMARKS:
        t0 = datetime.datetime.now(datetime.timezone.utc)
        print(f"[benchmarks.run] {name} ...", flush=True)
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
            kwargs = _kwargs(mod.run, args.device, args.quick)
            if args.voxels is not None and "voxels" in inspect.signature(mod.run).parameters:
                kwargs["voxels"] = args.voxels
            rows = mod.run(**kwargs)
            report["rows"][name] = rows
            summary += summarise(name, rows, args.device)
        except Exception as err:
            report["errors"][name] = "".join(traceback.format_exception_only(type(err), err)).strip()
            traceback.print_exc()
            summary.append({"figure": f"{name}", "value": None, "unit": "", "anchor": "", "ratio": None,
                            "ratio_of": "", "floor": None, "target": "",
                            "check": f"FAILED: {report['errors'][name][:80]}"})  # fmt: skip
        secs = (datetime.datetime.now(datetime.timezone.utc) - t0).total_seconds()
        print(f"[benchmarks.run] {name} done in {secs:.0f} s", flush=True)
    report["summary"] = summary
    report["wall_s"] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    print(format_table(summary))
    out = args.out or RESULTS / f"run_{args.device.split(':')[0]}_{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"[benchmarks.run] wrote {out}")
    return report


if __name__ == "__main__":
    main()
