# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Evaluator time with separate calibration handlers vs one SharedCalibrationState (the bundles' handler set).

A MONAI ``SupervisedEvaluator`` (identity network: the data already are probabilities, so only the metric work is
timed) scores ``--images`` two-class volumes with the bundles' validation set ECE, Brier, Brier+ and the
``ReliabilityDiagramSaver`` (``--all`` adds MCE and NLL), once with each handler reading the probabilities itself
(before) and once with all of them sharing one state (after). The two setups run alternately, ``--repeats`` times,
in the same process; the medians and their ratio are printed. The values of both runs are checked to be equal.

    python -m benchmarks.bench_evaluator            # 4 images of 2 x 112 x 112 x 64
    python -m benchmarks.bench_evaluator --all --images 6 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def _items(n: int, shape: tuple[int, ...]) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        fg = torch.rand(1, *shape, generator=g) ** (1 + i % 3)
        label = (torch.rand(1, *shape, generator=g) < fg).float()
        out.append({"image": torch.cat([1 - fg, fg]), "label": label})
    return out


def _evaluator(items: list[dict], out_dir: str, shared: bool, all_metrics: bool):
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine
    from monai.transforms import CopyItemsd

    from monai_meep.handlers import (
        BrierScore,
        ExpectedCalibrationError,
        NegativeLogLikelihood,
        ReliabilityDiagramSaver,
        SharedCalibrationState,
    )

    io = from_engine(["prob", "label"])
    state = SharedCalibrationState(io, num_classes=2) if shared else None
    kw = {"state": state} if shared else {"output_transform": io}
    metrics = {
        "val_ece": ExpectedCalibrationError(num_bins=15, **kw),
        "val_brier": BrierScore(**kw),
        "val_brier_plus": BrierScore(stratum="positive", **kw),
    }
    if all_metrics:
        metrics["val_mce"] = ExpectedCalibrationError(calibration_reduction="maximum", **kw)
        metrics["val_nll"] = NegativeLogLikelihood(**kw)
    saver = ReliabilityDiagramSaver(out_dir, state=state) if shared else ReliabilityDiagramSaver(out_dir)
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(items), batch_size=1, num_workers=0),
        network=torch.nn.Identity(),
        postprocessing=CopyItemsd(keys="pred", names="prob"),
        key_val_metric={"val_ece": metrics.pop("val_ece")},
        additional_metrics=metrics,
        val_handlers=[saver],
    )


def run(images: int, shape: tuple[int, ...], repeats: int, all_metrics: bool) -> dict:
    items = _items(images, shape)
    times: dict[str, list[float]] = {"separate": [], "shared": []}
    values: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):  # the first round warms up (Numba compilation, matplotlib)
            for name in ("separate", "shared"):
                ev = _evaluator(items, f"{tmp}/{name}", name == "shared", all_metrics)
                t0 = time.perf_counter()
                ev.run()
                if r:
                    times[name].append(time.perf_counter() - t0)
                values[name] = dict(ev.state.metrics)
    if values["separate"] != values["shared"]:
        raise AssertionError(f"shared and separate handlers disagree: {values}")
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "voxels_per_image": 2 * int(torch.tensor(shape).prod()),
        "images": images,
        "handlers": 4 + 2 * all_metrics,
        "separate_s": med["separate"],
        "shared_s": med["shared"],
        "ratio_shared_over_separate": med["shared"] / med["separate"],
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--shape", type=int, nargs="+", default=[112, 112, 64])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--all", action="store_true", help="add MCE and NLL handlers (6 calibration handlers in all)")
    a = p.parse_args(argv)
    r = run(a.images, tuple(a.shape), a.repeats, a.all)
    print(
        f"evaluator, {r['images']} images x {r['voxels_per_image']} probabilities, {r['handlers']} calibration "
        f"handlers, {r['threads']} threads: separate {r['separate_s']:.3f} s, shared {r['shared_s']:.3f} s, "
        f"ratio shared / separate {r['ratio_shared_over_separate']:.3f} (medians of {a.repeats}; values equal)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
