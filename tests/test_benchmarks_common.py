# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The benchmarks' interleaved timer and the OMP_WAIT_POLICY=PASSIVE child of ``bench_loss_cpu``."""

from __future__ import annotations

import contextlib
import statistics
import subprocess

import pytest
import torch

from benchmarks import _common, bench_loss_cpu
from benchmarks.run import summarise


def test_interleaved_rounds_alternate_the_order_and_ratios_are_per_round(monkeypatch):
    calls: list[str] = []
    # seconds per timing, by variant, in the order each variant is timed; round 2 is slow for both (a drift)
    script = {"base": [1.0, 1.0, 4.0, 1.0, 1.0], "other": [2.0, 2.0, 8.0, 2.0, 2.2]}

    def fake_time_fn(fn, device, reps, warmup=3, rounds=5):
        name = fn()
        calls.append(name)
        return script[name][sum(c == name for c in calls) - 1]

    monkeypatch.setattr(_common, "time_fn", fake_time_fn)
    entered = []

    @contextlib.contextmanager
    def context():
        entered.append(1)
        yield

    variants = {"base": (lambda: "base", contextlib.nullcontext), "other": (lambda: "other", context)}
    out = _common.time_interleaved(variants, torch.device("cpu"), reps=1, warmup=0, rounds=5)
    assert calls == ["base", "other", "other", "base", "base", "other", "other", "base", "base", "other"]
    assert len(entered) == 1 + 5  # the context is entered for the warm-up and around each timing of its variant
    assert out["base"] == (1.0, 1.0)
    assert out["other"][0] == statistics.median(script["other"]) == 2.0
    # the per-round ratios are 2, 2, 2, 2, 2.2: the slow round does not bias the ratio
    assert out["other"][1] == pytest.approx(2.0)


def test_interleaved_runs_the_warmup_and_rejects_no_variant():
    counts = {"a": 0}

    def fn():
        counts["a"] += 1

    _common.time_interleaved({"a": (fn, contextlib.nullcontext)}, torch.device("cpu"), reps=2, warmup=3, rounds=2)
    assert counts["a"] == 3 + 2 * 2
    with pytest.raises(ValueError, match="at least one variant"):
        _common.time_interleaved({}, torch.device("cpu"), reps=1)


def test_passive_child_rows_are_prefixed_and_a_failure_is_one_reported_row(monkeypatch):
    seen = {}

    def fake_run(cmd, cwd, env, capture_output, text):
        seen.update(cmd=cmd, env=env)
        row = {"benchmark": "loss_cpu", "figure": "f", "value": 1.0, "unit": "ms", "ratio": 1.1, "target": "<= 1.3x"}
        return subprocess.CompletedProcess(cmd, 0, stdout="warning line\n" + __import__("json").dumps([row]))

    monkeypatch.setattr(bench_loss_cpu.subprocess, "run", fake_run)
    rows = bench_loss_cpu.passive_child(quick=True)
    assert seen["env"]["OMP_WAIT_POLICY"] == "PASSIVE" and seen["env"][bench_loss_cpu.CHILD_ENV] == "1"
    assert seen["cmd"][-2:] == ["--json", "--quick"]
    assert rows == [
        {"benchmark": "loss_cpu", "figure": "[OMP_WAIT_POLICY=PASSIVE] f", "value": 1.0, "unit": "ms",
         "ratio": 1.1, "target": "", "anchor": ""}
    ]  # fmt: skip

    def failing_run(cmd, cwd, env, capture_output, text):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="Traceback\nRuntimeError: boom")

    monkeypatch.setattr(bench_loss_cpu.subprocess, "run", failing_run)
    rows = bench_loss_cpu.passive_child(quick=False)
    assert len(rows) == 1 and "boom" in rows[0]["error"]
    assert "FAILED: RuntimeError: boom" in bench_loss_cpu._format_row(rows[0])
    (summary,) = summarise("bench_loss_cpu", rows, "cpu")
    assert summary["check"].startswith("FAILED") and summary["value"] is None
