# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""ECE + Brier over 1e8 voxels: ``CalibrationHistogram`` (streamed) vs torchmetrics, MONAI 1.6 and netcal, one run.

Two synthetic cases, deterministic (seed 0, generated in fixed chunks; nothing tuned for any method):

- ``binary``: foreground probability ``p ~ U(0, 1)`` (float32, as ``torch.rand`` gives: multiples of 2^-24) and label
  ``y ~ Bernoulli(p)``: perfectly calibrated by construction, so the population ECE is 0 and the sample ECE is
  sampling noise (~1e-4). ECE is the paper's foreground ECE (15 equal-width bins on ``p``).
- ``multiclass3``: 3-class softmax of ``3 * N(0, 1)`` logits (float32, channel-first ``(1, 3, N)``), labels drawn
  from the softmax of the logits / 2 (an over-confident model, a non-trivial ECE). ECE is top-label (arg-max
  confidence vs correctness: torchmetrics' and netcal's definition); MONAI computes per-class (marginal) ECE only, so
  it is compared with our marginal ECE of each class.

Ground truth: a float64 NumPy recomputation in chunks, independent of the package. For ``binary`` every probability
is a multiple of 2^-24, so the per-bin sums are accumulated as int64 multiples of 2^-24: the reference ECE is
exact (one final division). Otherwise chunk sums are float64 ``np.bincount`` (<= 2^22 terms each) added with
``math.fsum``: relative error < 1e-9.

Method: every (case, method) runs in its own subprocess, which generates the data, builds the method's native input
layout *outside* the timed region (torchmetrics / netcal get a contiguous ``(N, C)`` copy, MONAI its one-hot float
target; ours and the reference read the channel-first tensors as they come from a network), runs one small warm-up
call, then times one full call (``--repeat N``: N calls, the row gives the median and lists every time; the
reference is timed once). "Peak extra memory" is the process's resident-set high-water mark during the timed
call minus the resident set just before it, after freed heap pages went back to the OS (``malloc_trim``), so the
call cannot hide in memory left over from data generation (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``;
where that is not writable, ``ru_maxrss`` minus the RSS before, an over-estimate) -- RSS, not tracemalloc,
because tracemalloc does not see torch's allocations. On CUDA the figure is ``torch.cuda.max_memory_allocated``
minus the allocation before. Ours always computes marginal + top-label ECE, Brier, Brier+ and NLL in its one pass;
the anchors compute one ECE each. Run:

    python -m benchmarks.bench_metrics --device cpu --voxels 1e8 --repeat 3     # or cuda

It prints a table and writes ``benchmarks/results/metrics_<device>_<date>.json``. A worker that fails (e.g. out of
memory) is retried at a quarter of the voxels, and the row says the size it ran at.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CASES", "METHODS", "run", "main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_BINS = 15
GEN_CHUNK = 1 << 22
CASES = ("binary", "multiclass3")
METHODS = ("reference", "ours", "plain_read", "torchmetrics", "monai", "netcal")
# "plain_read": one np.add.reduce over the probabilities and one over the labels, the same arrays ours reads: the
# floor a one-pass update can approach (issue 17's target: ours within 3x of it, the ratio measured in one run)


# ------------------------------------------------------------------------------------------------------ data
def make_data(case: str, voxels: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(1, C, N)`` float32 and labels ``(1, 1, N)`` int64 on ``device``, generated chunk by chunk
    (so generation never holds more than one chunk of temporaries, and the data does not depend on the device)."""
    c = 1 if case == "binary" else 3
    probs = torch.empty((1, c, voxels), dtype=torch.float32, device=device)
    labels = torch.empty((1, 1, voxels), dtype=torch.int64, device=device)
    for k, start in enumerate(range(0, voxels, GEN_CHUNK)):
        n = min(GEN_CHUNK, voxels - start)
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)
        if case == "binary":
            p = torch.rand(n, generator=g)
            y = (torch.rand(n, generator=g) < p).long()
            probs[0, 0, start : start + n] = p.to(device)
        else:
            logits = 3.0 * torch.randn(c, n, generator=g)
            true = torch.softmax(logits / 2.0, dim=0).cumsum(0)
            u = torch.rand(1, n, generator=g)
            y = (u > true[:-1]).sum(0)  # inverse-CDF draw from the tempered softmax
            probs[0, :, start : start + n] = torch.softmax(logits, dim=0).to(device)
        labels[0, 0, start : start + n] = y.to(device)
    return probs, labels


# ------------------------------------------------------------------------------------------------- reference
def _exact_grid(p64: np.ndarray) -> bool:
    return bool(np.all(np.floor(p64 * 2.0**24) == p64 * 2.0**24))


def reference(case: str, probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """float64 / int64 NumPy ground truth, computed in chunks (see the module docstring)."""
    c, n_total = probs.shape[1], probs.shape[2]
    k = 2 if case == "binary" else c  # marginal rows: [bg, fg] for binary
    cnt = np.zeros((k, NUM_BINS), np.int64)
    pos = np.zeros((k, NUM_BINS), np.int64)
    psum_int = np.zeros((k, NUM_BINS), np.int64)  # exact path: sums of p * 2^24
    psum_parts: list[np.ndarray] = []
    brier_parts: list[np.ndarray] = []
    top_cnt = np.zeros(NUM_BINS, np.int64)
    top_hit = np.zeros(NUM_BINS, np.int64)
    top_parts: list[np.ndarray] = []
    exact = True
    for s in range(0, n_total, GEN_CHUNK):
        p = probs[0, :, s : s + GEN_CHUNK].cpu().numpy().astype(np.float64)
        y = labels[0, 0, s : s + GEN_CHUNK].cpu().numpy()
        if case == "binary":
            p = np.stack([1.0 - p[0], p[0]])  # 1 - p is exact for p on the 2^-24 grid
        onehot = (y[None, :] == np.arange(k)[:, None]).astype(np.float64)
        b = np.minimum(np.floor(p * NUM_BINS).astype(np.int64), NUM_BINS - 1)
        part = np.zeros((k, NUM_BINS))
        for r in range(k):
            cnt[r] += np.bincount(b[r], minlength=NUM_BINS)
            pos[r] += np.bincount(b[r], weights=onehot[r], minlength=NUM_BINS).astype(np.int64)
            part[r] = np.bincount(b[r], weights=p[r], minlength=NUM_BINS)
        psum_parts.append(part)
        if exact and _exact_grid(p):
            for r in range(k):
                psum_int[r] += np.bincount(b[r], weights=p[r] * 2.0**24, minlength=NUM_BINS).astype(np.int64)
        else:
            exact = False
        brier_parts.append(((p - onehot) ** 2).sum(axis=1))
        conf, pred = p.max(axis=0), p.argmax(axis=0)
        tb = np.minimum(np.floor(conf * NUM_BINS).astype(np.int64), NUM_BINS - 1)
        top_cnt += np.bincount(tb, minlength=NUM_BINS)
        top_hit += np.bincount(tb, weights=(pred == y), minlength=NUM_BINS).astype(np.int64)
        top_parts.append(np.bincount(tb, weights=conf, minlength=NUM_BINS))
    stacked = np.stack(psum_parts)  # (chunks, k, bins): fsum over chunks keeps the float64 path near-exact
    psum = np.array([[math.fsum(stacked[:, r, j]) for j in range(NUM_BINS)] for r in range(k)])
    if exact:  # bin sums of p are exactly psum_int / 2^24; |sum p - sum y| is computed in integers
        gap = np.abs(psum_int - pos * 2**24).sum(axis=1)
        marginal = np.array([float(g) / 2**24 / n_total for g in gap])
    else:
        marginal = np.abs(psum - pos).sum(axis=1) / n_total
    tstack = np.stack(top_parts)
    tsum = np.array([math.fsum(tstack[:, j]) for j in range(NUM_BINS)])
    bstack = np.stack(brier_parts)
    brier = np.array([math.fsum(bstack[:, r]) for r in range(k)]) / n_total
    out = {
        "ece_marginal": marginal.tolist(),
        "ece_top_label": float(np.abs(tsum - top_hit).sum() / n_total),
        "brier": brier.tolist(),
        "reference_exact": exact,
    }
    out["ece"] = out["ece_marginal"][1] if case == "binary" else out["ece_top_label"]
    out["brier_value"] = out["brier"][1] if case == "binary" else float(np.mean(out["brier"]))
    return out


# --------------------------------------------------------------------------------------------------- methods
def _prepare(method: str, case: str, probs: torch.Tensor, labels: torch.Tensor) -> Any:
    """Each method's native input, built outside the timed region (conservative for the anchors)."""
    if method in ("reference", "ours"):
        return probs, labels
    if method == "plain_read":
        return probs.cpu().numpy(), labels.cpu().numpy()
    if method == "torchmetrics":
        x = probs[0, 0] if case == "binary" else probs[0].t().contiguous()
        return x, labels[0, 0]
    if method == "netcal":
        x = probs[0, 0] if case == "binary" else probs[0].t().contiguous()
        return x.cpu().numpy(), labels[0, 0].cpu().numpy()
    if method == "monai":
        if case == "binary":  # the foreground channel alone, float target, include_background=True
            return probs, labels.to(torch.float32)
        onehot = torch.zeros_like(probs)
        onehot.scatter_(1, labels, 1.0)
        return probs, onehot
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}.")


def _ours(case: str, probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    from monai_meep.metrics import CalibrationHistogram

    h = CalibrationHistogram(num_classes=2 if case == "binary" else probs.shape[1])
    h.update(probs, labels)
    return _from_histogram(case, h)


def _from_histogram(case: str, h: Any) -> dict[str, Any]:
    """ECE (marginal and top-label) and Brier of an accumulated histogram through the package's public functions."""
    from monai_meep.metrics import brier_score_from_histogram, calibration_error_from_histogram

    marginal = calibration_error_from_histogram(h, num_bins=NUM_BINS, include_background=True).cpu()
    top = float(calibration_error_from_histogram(h, num_bins=NUM_BINS, mode="top_label"))
    brier = brier_score_from_histogram(h, include_background=True).cpu().tolist()
    out = {"ece_marginal": marginal.reshape(-1).tolist(), "ece_top_label": top, "brier": brier}
    out["ece"] = out["ece_marginal"][1] if case == "binary" else top
    out["brier_value"] = brier[1] if case == "binary" else float(np.mean(brier))
    return out


def _run_method(method: str, case: str, inputs: Any, num_classes: int) -> dict[str, Any]:
    if method == "reference":
        return reference(case, *inputs)
    if method == "ours":
        return _ours(case, *inputs)
    if method == "plain_read":
        p, y = inputs
        return {"ece": None, "checksum": float(np.add.reduce(p, axis=None)) + float(np.add.reduce(y, axis=None))}
    if method == "torchmetrics":
        from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

        x, y = inputs
        if case == "binary":
            m = BinaryCalibrationError(n_bins=NUM_BINS, norm="l1").to(x.device)
        else:
            m = MulticlassCalibrationError(num_classes=num_classes, n_bins=NUM_BINS, norm="l1").to(x.device)
        m.update(x, y)
        return {"ece": float(m.compute())}
    if method == "netcal":
        from netcal.metrics import ECE

        x, y = inputs
        return {"ece": float(ECE(bins=NUM_BINS).measure(x, y))}
    if method == "monai":
        from monai.metrics import CalibrationErrorMetric

        x, y = inputs
        m = CalibrationErrorMetric(num_bins=NUM_BINS, include_background=True, metric_reduction="none")
        m(y_pred=x, y=y)
        vals = m.aggregate().double().reshape(-1).cpu().tolist()
        return {"ece_marginal": vals, "ece": vals[0] if case == "binary" else None}
    raise ValueError(f"unknown method {method!r}")


# ------------------------------------------------------------------------------------------------ measuring
def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux >= 4.0: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so that the timed call cannot reuse resident memory
    left over from data generation and look cheaper than it is."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker(case: str, method: str, voxels: int, device: str) -> dict[str, Any]:
    """Generate, prepare, warm up, then time and memory-profile full calls (runs in its own process).

    ``BENCH_METRICS_REPEAT`` (default 1) full calls are timed; the row gives their median (``time_s``, ``cpu_s``) and
    every time (``times_s``), so a noisy shared machine shows as spread rather than as one lucky or unlucky figure.
    """
    import gc

    warnings.filterwarnings("ignore")
    threads = int(os.environ.get("BENCH_METRICS_THREADS") or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    num_classes = 2 if case == "binary" else 3
    run_dev = "cpu" if method in ("netcal", "reference") else device
    small = _prepare(method, case, *make_data(case, 4096, run_dev, seed=1))
    _run_method(method, case, small, num_classes)  # warm-up: imports, lazy init, kernel caches
    del small
    inputs = _prepare(method, case, *make_data(case, voxels, run_dev))
    gc.collect()
    _trim_heap()
    _sync(device)
    rss0 = _status_kb("VmRSS")
    exact_peak = _reset_peak()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        cuda0 = torch.cuda.memory_allocated()
    times, cpus = [], []
    for _ in range(max(1, int(os.environ.get("BENCH_METRICS_REPEAT") or 1))):
        t0, c0 = time.perf_counter(), time.process_time()
        values = _run_method(method, case, inputs, num_classes)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    elapsed, cpu = float(np.median(times)), float(np.median(cpus))
    peak = _status_kb("VmHWM") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row = {
        "case": case,
        "method": method,
        "voxels": voxels,
        "device": run_dev,
        "time_s": elapsed,
        "cpu_s": cpu,
        "times_s": times,
        "threads": threads,
        **values,
    }
    row["peak_extra_mb"] = None if peak is None or rss0 is None else (peak - rss0) / 1024
    row["memory_measure"] = "VmHWM-VmRSS" if exact_peak else "ru_maxrss-VmRSS (upper bound)"
    if run_dev.startswith("cuda"):
        row["cuda_peak_extra_mb"] = (torch.cuda.max_memory_allocated() - cuda0) / 2**20
    return row


def _spawn(
    case: str, method: str, voxels: int, device: str, timeout: float, threads: int = 0, repeat: int = 1
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_metrics", "--worker", case, method, str(voxels), device]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads:
        env["BENCH_METRICS_THREADS"] = str(threads)
    env["BENCH_METRICS_REPEAT"] = str(repeat)
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "method": method, "voxels": voxels, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = f"exit code {proc.returncode}" + (" (killed: out of memory?)" if proc.returncode < 0 else "")
        return {"case": case, "method": method, "voxels": voxels, "error": why, "stderr": proc.stderr[-2000:]}
    return json.loads(lines[-1])


def run(
    device: str = "cpu",
    voxels: int | float = 1e8,
    timeout: float = 1800.0,
    retries: int = 2,
    cases: tuple[str, ...] = CASES,
    methods: tuple[str, ...] = METHODS,
    threads: int = 0,
    repeat: int = 1,
) -> list[dict]:
    """Run every (case, method) at ``voxels`` on ``device``; returns one dict per row with errors vs the reference
    (always computed, also when ``methods`` leaves it out) and time ratios vs ours (when ours is run).

    A failed worker is retried at a quarter of the voxels (``retries`` times); its row records the size it ran at,
    and is compared with a reference computed at that size.
    """
    voxels = int(voxels)
    rows: list[dict] = []
    methods = ("reference", *[m for m in methods if m != "reference"])
    for case in cases:
        refs: dict[int, dict] = {}
        case_rows = []
        for method in methods:
            n = voxels
            for _ in range(retries + 1):
                row = _spawn(case, method, n, device, timeout, threads, repeat if method != "reference" else 1)
                if "error" not in row or n < 4096 * 4:
                    break
                n //= 4
            case_rows.append(row)
            if method == "reference" and "error" not in row:
                refs[row["voxels"]] = row
        ours = next((r for r in case_rows if r["method"] == "ours" and "error" not in r), None)
        for row in case_rows:
            if "error" in row:
                rows.append(row)
                continue
            ref = refs.get(row["voxels"])
            if ref is None:  # the method ran at a reduced size: compute the matching reference
                ref = refs[row["voxels"]] = _spawn(case, "reference", row["voxels"], device, timeout, threads)
            _compare(row, ref)
            if ours is not None and ours["voxels"] == row["voxels"]:
                row["time_ratio_vs_ours"] = row["time_s"] / ours["time_s"]
                row["cpu_ratio_vs_ours"] = row["cpu_s"] / ours["cpu_s"]
            rows.append(row)
    return rows


def _compare(row: dict, ref: dict) -> None:
    if row.get("ece") is not None:
        row["ece_abs_err"] = abs(row["ece"] - ref["ece"])
    if row.get("brier_value") is not None:
        row["brier_abs_err"] = abs(row["brier_value"] - ref["brier_value"])
    if row["method"] == "monai" or (row["method"] == "ours" and row["case"] != "binary"):
        # marginal (per-class) ECE against the reference's marginal ECE of the same classes
        mine, theirs = row.get("ece_marginal"), ref["ece_marginal"]
        if mine:
            theirs = theirs[1:] if row["case"] == "binary" and len(mine) == 1 else theirs
            row["ece_marginal_max_abs_err"] = max(abs(a - b) for a, b in zip(mine, theirs, strict=True))
    row["reference_ece"] = ref["ece"]


# ------------------------------------------------------------------------------------------------------- CLI
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("monai", "torchmetrics", "netcal", "numba", "monai_meep"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # an anchor that is not installed is reported, not fatal
            out[mod] = "not installed"
    return out


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"model name\s*:\s*(.*)", f.read())
        return f"{model.group(1) if model else platform.processor()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        return platform.processor()


def format_table(rows: list[dict]) -> str:
    """A fixed-width table of the rows (what ``main`` prints)."""
    head = (
        f"{'case':<12}{'method':<13}{'voxels':>9}{'wall s':>8}{'x ours':>8}{'cpu s':>8}{'x ours':>8}{'peak MB':>9}"
        f"{'ECE':>11}{'|dECE|':>10}{'Brier':>11}{'|dBrier|':>10}"
    )
    lines = [head, "-" * len(head)]

    def f(v: Any, spec: str) -> str:
        width = int(spec.split(".")[0])
        return format(v, spec) if isinstance(v, (int, float)) else "-".rjust(width)

    for r in rows:
        if "error" in r:
            lines.append(f"{r['case']:<12}{r['method']:<13}{r['voxels']:>9.3g}  FAILED: {r['error']}")
            continue
        ece_err = r.get("ece_abs_err", r.get("ece_marginal_max_abs_err"))
        lines.append(
            f"{r['case']:<12}{r['method']:<13}{r['voxels']:>9.3g}{f(r['time_s'], '8.2f')}"
            f"{f(r.get('time_ratio_vs_ours'), '8.2f')}{f(r.get('cpu_s'), '8.2f')}"
            f"{f(r.get('cpu_ratio_vs_ours'), '8.2f')}"
            f"{f(r.get('peak_extra_mb'), '9.0f')}"
            f"{f(r.get('ece'), '11.3e')}{f(ece_err, '10.1e')}{f(r.get('brier_value'), '11.3e')}"
            f"{f(r.get('brier_abs_err'), '10.1e')}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--voxels", type=float, default=1e8)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: all CPU cores)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument("--repeat", type=int, default=1, help="timed full calls per method (the row gives the median)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--worker", nargs=4, metavar=("CASE", "METHOD", "VOXELS", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        case, method, n, dev = args.worker
        print(json.dumps(worker(case, method, int(n), dev)))
        return []
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False.")
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = run(
        args.device,
        args.voxels,
        args.timeout,
        cases=tuple(args.cases),
        methods=tuple(args.methods),
        threads=args.threads,
        repeat=args.repeat,
    )
    table = format_table(rows)
    print(table)
    print(
        "ECE: binary = foreground marginal; multiclass3 = top-label, except monai = per-class marginal (its |dECE| "
        "is the max over classes). Ours computes every metric in its one streamed pass; anchors one ECE each."
    )
    payload = {
        "benchmark": "bench_metrics",
        "date": started.isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": _device_name(args.device),
        "versions": _versions(),
        "load_average_at_start": load,
        "num_bins": NUM_BINS,
        "requested_voxels": int(args.voxels),
        "threads": args.threads or os.cpu_count(),
        "repeat": args.repeat,
        "rows": rows,
        "table": table,
    }
    out = args.out or RESULTS_DIR / f"metrics_{args.device.split(':')[0]}_{started:%Y%m%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
