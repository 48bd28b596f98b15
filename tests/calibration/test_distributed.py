"""Two CPU processes (gloo): the streamed state combined across ranks gives the single-process fit."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from monai_meep.calibration import CalibratorFitHandler, IsotonicCalibration, PlattScaling, TemperatureScaling


def _data(seed: int, num_classes: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, num_classes, 30, 30, generator=g) * 3
    y = torch.multinomial(torch.softmax(x / 3, 1).movedim(1, -1).reshape(-1, num_classes), 1, generator=g)
    return x, y.reshape(4, 30, 30).unsqueeze(1)


def _make():
    return [PlattScaling(2), IsotonicCalibration(2), TemperatureScaling(3)]


def _single_process():
    cals = _make()
    for cal, c in zip(cals, (2, 2, 3), strict=True):
        cal.update(*_data(0, c)).update(*_data(1, c)).fit()
    return cals


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    from ignite.engine import Engine

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results = {}
        for cal, c in zip(_make(), (2, 2, 3), strict=True):
            x, y = _data(rank, c)  # each rank sees its own half
            engine = Engine(lambda e, batch: batch)
            handler = CalibratorFitHandler(
                cal, save_path=os.path.join(out_dir, f"{cal.kind}.json"), output_transform=lambda out: out
            )
            handler.attach(engine)
            engine.run([(x[:2], y[:2]), (x[2:], y[2:])], max_epochs=1)
            results[cal.kind] = cal.state_dict()["params"]
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_all_reduce_matches_single_process(tmp_path):
    init_file = str(tmp_path / "init")
    # spawn, not fork: a fork after torch has started its OpenMP pool (earlier tests in this process) can deadlock
    mp.start_processes(_worker, args=(init_file, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    ref = {cal.kind: cal.state_dict()["params"] for cal in _single_process()}
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # histograms are summed: bit-identical integer counts; float64 sums differ only in rounding order
        # (the fitted values are integer ratios: exact; the x points are float64 means: equal up to rounding order)
        assert got["isotonic"]["y"] == ref["isotonic"]["y"]
        np.testing.assert_allclose(got["isotonic"]["x"][0], ref["isotonic"]["x"][0], rtol=1e-12, atol=0)
        for a, b in zip(got["platt"]["a"] + got["platt"]["b"], ref["platt"]["a"] + ref["platt"]["b"], strict=True):
            assert abs(a - b) < 1e-9
        # 3-class temperature: the merged uniform samples hold every voxel here (7200 < sample_size)
        assert abs(got["temperature"]["temperature"] - ref["temperature"]["temperature"]) < 1e-9
    saved = json.loads((tmp_path / "platt.json").read_text())
    assert saved["params"] == json.loads((tmp_path / "rank0.json").read_text())["platt"]
