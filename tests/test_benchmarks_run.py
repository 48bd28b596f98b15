# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""``benchmarks.run`` sizes each benchmark for the device and ``--quick``."""

from __future__ import annotations

from benchmarks import bench_metrics
from benchmarks.run import _kwargs


def test_metrics_benchmark_takes_the_median_of_three_calls_unless_quick():
    full = _kwargs(bench_metrics.run, "cpu", quick=False)
    quick = _kwargs(bench_metrics.run, "cpu", quick=True)
    assert full == {"device": "cpu", "voxels": 1e8, "repeat": 3}
    assert quick == {"device": "cpu", "voxels": 1e6, "repeat": 1}
    assert _kwargs(bench_metrics.run, "cuda", quick=False)["voxels"] == 2e8
