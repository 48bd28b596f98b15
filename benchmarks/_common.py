# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Helpers shared by the small benchmarks (``bench_loss``, ``bench_kernels``, ``bench_sliding_window``).

``time_fn`` times a callable the same way on every device (CUDA events on a GPU, ``perf_counter`` on the CPU);
``time_interleaved`` times several variants round by round, for ratios that a slow drift of the machine does not bias;
``device_quick_main`` is the ``--device / --quick`` command line those benchmarks share, each printing its rows its
own way. Example::

    def main(argv=None):
        return device_quick_main(__doc__, run, lambda r: f"{r['figure']} {r['value']}", argv)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch

__all__ = ["device_quick_main", "reference_path", "time_fn", "time_interleaved"]


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Force the plain PyTorch MEEP regulariser: no Triton kernel for CUDA tensors, no Numba kernel on the CPU."""
    from monai_meep.losses import functional as meep_functional

    saved_fused = getattr(meep_functional, "_FUSED_SUM_COUNT", None)
    saved_env = os.environ.get("MONAI_MEEP_NUMBA")
    meep_functional._FUSED_SUM_COUNT = None
    os.environ["MONAI_MEEP_NUMBA"] = "0"  # read at each call by monai_meep.kernels.meep_cpu
    try:
        yield
    finally:
        meep_functional._FUSED_SUM_COUNT = saved_fused
        if saved_env is None:
            os.environ.pop("MONAI_MEEP_NUMBA", None)
        else:
            os.environ["MONAI_MEEP_NUMBA"] = saved_env


def time_fn(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 3, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean time per call (seconds) of ``reps`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / reps)
        else:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            samples.append((time.perf_counter() - t0) / reps)
    return statistics.median(samples)


def time_interleaved(
    variants: dict[str, tuple[Callable[[], object], Callable[[], contextlib.AbstractContextManager]]],
    device: torch.device,
    reps: int,
    warmup: int = 3,
    rounds: int = 7,
) -> dict[str, tuple[float, float]]:
    """Time every variant once per round, the order reversed every other round; per variant, the median time and the
    median over rounds of its ratio to the first variant's time in the same round.

    Why: timing one variant for all its rounds and then the next (as :func:`time_fn` does, one call per variant)
    lets a drift of a shared machine (another tenant, a frequency change) land on one variant only; on the 2-core
    development VM that moved a ratio by 15 %. Within a round the variants run seconds apart, and alternating the
    order cancels what running first or last costs.

    Args:
        variants: ``{name: (fn, context)}``; ``context()`` (e.g. ``contextlib.nullcontext``) is entered around each
            timing of ``fn``. The first entry is the base of the ratios.
        device: where ``fn`` runs (see :func:`time_fn`).
        reps: calls per timing (the time is their mean).
        warmup: untimed calls of each variant first.
        rounds: timings per variant.

    Returns:
        ``{name: (median seconds per call, median ratio to the base)}``, the base's ratio being 1.

    Example:
        >>> t = time_interleaved({"a": (lambda: None, contextlib.nullcontext)}, torch.device("cpu"), reps=2)
        >>> t["a"][1]
        1.0
    """
    if not variants:
        raise ValueError("time_interleaved needs at least one variant.")
    names = list(variants)
    for name in names:
        fn, context = variants[name]
        with context():
            for _ in range(warmup):
                fn()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, context = variants[name]
            with context():
                samples[name].append(time_fn(fn, device, reps, warmup=0, rounds=1))
    base = samples[names[0]]
    ratios = {name: [t / b for t, b in zip(s, base, strict=True)] for name, s in samples.items()}
    return {name: (statistics.median(s), statistics.median(ratios[name])) for name, s in samples.items()}


def device_quick_main(
    doc: str | None,
    run: Callable[[str, bool], list[dict]],
    format_row: Callable[[dict], str],
    argv: list[str] | None = None,
) -> list[dict]:
    """Parse ``--device`` (default ``cuda`` where available) and ``--quick``, call ``run``, print each row.

    Args:
        doc: the benchmark module's docstring; its first line is the ``--help`` description.
        run: the benchmark's ``run(device, quick)``.
        format_row: one printed line for one row of ``run``.
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The rows ``run`` returned.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.device, args.quick)
    for r in rows:
        print(format_row(r))
    return rows
