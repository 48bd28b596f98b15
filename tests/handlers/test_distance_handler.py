# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""HausdorffDistanceMM handler: spacing read from MetaTensor headers inside an Ignite evaluator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import HausdorffDistance, from_engine
from monai.metrics.hausdorff_distance import compute_hausdorff_distance

from monai_meep.handlers.distance import HausdorffDistanceMM, spacing_from_meta

# many tiny torch ops: on a shared 2-core machine, intra-op threads only add contention
pytestmark = pytest.mark.usefixtures("single_thread")


def _onehot_ellipsoid(shape, center, radii):
    grid = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    fg = (sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True)) <= 1).float()
    return torch.stack([1 - fg, fg])


def _cases(affine):
    shape = (24, 20, 10)
    items = []
    for k in range(3):
        pred = _onehot_ellipsoid(shape, (11 + k, 9, 5), (6, 5 + k, 2))
        gt = _onehot_ellipsoid(shape, (12, 10 - k, 4), (7, 5, 3))
        items.append({"image": MetaTensor(pred, affine=affine), "label": MetaTensor(gt, affine=affine)})
    return items


def test_evaluator_reads_pixdim_and_reports_mm():
    affine = torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-12.0, 5.0, 30.0], dtype=torch.float64)  # an origin, as real headers have
    data = _cases(affine)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),  # the "image" is already the binarised one-hot prediction
        key_val_metric={
            "hd_mm": HausdorffDistanceMM(output_transform=from_engine(["pred", "label"]), reduction="mean")
        },
        additional_metrics={
            "hd95_mm": HausdorffDistanceMM(percentile=95, output_transform=from_engine(["pred", "label"])),
            "hd_vox": HausdorffDistance(output_transform=from_engine(["pred", "label"])),
        },
        val_handlers=[],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator.run()
        preds = torch.stack([d["image"].as_tensor() for d in data])
        gts = torch.stack([d["label"].as_tensor() for d in data])
        ref_mm = compute_hausdorff_distance(preds, gts, spacing=(1.0, 1.0, 3.0))
        ref_95 = compute_hausdorff_distance(preds, gts, spacing=(1.0, 1.0, 3.0), percentile=95)
        ref_vox = compute_hausdorff_distance(preds, gts)
    metrics = evaluator.state.metrics
    assert metrics["hd_mm"] == pytest.approx(float(ref_mm.mean()), abs=1e-4)
    assert metrics["hd95_mm"] == pytest.approx(float(ref_95.mean()), abs=1e-4)
    assert metrics["hd_vox"] == pytest.approx(float(ref_vox.mean()), abs=1e-4)
    assert abs(metrics["hd_mm"] - metrics["hd_vox"]) > 0.5  # the z spacing matters in these cases
    details = evaluator.state.metric_details["hd_mm"]
    assert details.shape == (3, 1)
    np.testing.assert_allclose(details.numpy(), ref_mm.numpy(), atol=1e-4)


def test_missing_spacing_falls_back_to_1mm_with_one_warning():
    data = _cases(torch.eye(4))
    plain = [(d["image"].as_tensor(), d["label"].as_tensor()) for d in data]

    def step(engine, batch):
        return {"pred": [batch[0]], "label": [batch[1]]}

    engine = Engine(step)
    HausdorffDistanceMM(output_transform=from_engine(["pred", "label"])).attach(engine, "hd")
    with pytest.warns(UserWarning, match="no voxel spacing") as record:
        engine.run(plain)
    assert sum("no voxel spacing" in str(w.message) for w in record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = compute_hausdorff_distance(torch.stack([p for p, _ in plain]), torch.stack([t for _, t in plain]))
    assert engine.state.metrics["hd"] == pytest.approx(float(ref.mean()), abs=1e-4)


def test_fixed_spacing_overrides_metadata():
    data = _cases(torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0])))
    handler = HausdorffDistanceMM(spacing=(2.0, 2.0, 2.0), save_details=False)
    handler.reset()
    handler.update(([data[0]["image"]], [data[0]["label"]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = compute_hausdorff_distance(
            data[0]["image"][None].as_tensor(), data[0]["label"][None].as_tensor(), spacing=2.0
        )
    assert handler.compute() == pytest.approx(float(ref.mean()), abs=1e-4)


def test_spacing_from_meta_sources():
    aff = torch.diag(torch.tensor([0.625, 0.625, 0.625, 1.0], dtype=torch.float64))
    t = MetaTensor(torch.zeros(1, 4, 4, 4), affine=aff)
    assert spacing_from_meta([t]) == ([[0.625, 0.625, 0.625]], True)
    # header pixdim (NIfTI layout, qfac first) when the affine is the default identity
    h = MetaTensor(torch.zeros(1, 4, 4, 4), meta={"pixdim": [1.0, 0.9, 0.9, 3.0, 1.0, 0, 0, 0]})
    assert spacing_from_meta([h]) == ([[0.9, 0.9, 3.0]], True)
    # label preferred over prediction; missing gives 1 mm and complete=False
    assert spacing_from_meta([torch.zeros(1, 4, 4, 4)], [t]) == ([[0.625, 0.625, 0.625]], True)
    assert spacing_from_meta([torch.zeros(1, 4, 4, 4)]) == ([[1.0, 1.0, 1.0]], False)
    # 2D images take the in-plane spacing
    t2 = MetaTensor(torch.zeros(1, 4, 4), affine=torch.diag(torch.tensor([0.5, 0.25, 1.0, 1.0], dtype=torch.float64)))
    assert spacing_from_meta([t2]) == ([[0.5, 0.25]], True)
