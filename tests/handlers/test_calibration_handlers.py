"""Calibration handlers in a MONAI SupervisedEvaluator: values, pooled mode, masks from the engine output, CSVs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import MetricsSaver, from_engine
from monai.transforms import Compose, CopyItemsd, Lambdad

from monai_meep.handlers import BrierScore, ExpectedCalibrationError, NegativeLogLikelihood
from monai_meep.metrics import brier_score, calibration_error, negative_log_likelihood


def _wmh_like_data(n_images=4, shape=(10, 12, 6), seed=0):
    """Two-class softmax 'predictions' with WMH labels 0 / 1 / 2 (2 = other pathology, not scored)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n_images):
        fg = torch.rand(1, *shape, generator=g) ** (1 + i)  # images differ in calibration
        label = (torch.rand(1, *shape, generator=g) < fg).float()
        label[:, :2] = 2.0
        prob = torch.cat([1 - fg, fg])
        meta = {"filename_or_obj": f"subject_{i}.nii.gz"}
        items.append({"image": MetaTensor(prob, meta=meta), "label": MetaTensor(label, meta=meta)})
    return items


def _run(items, handlers, tmp_path, key="ece"):
    loader = DataLoader(Dataset(items), batch_size=2, num_workers=0)
    post = Compose(
        [
            CopyItemsd(keys="pred", names="prob"),  # the network output already is a probability here
            CopyItemsd(keys="label", names="roi"),
            Lambdad(keys="roi", func=lambda x: x != 2),  # scoring mask: everything but label 2
        ]
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=torch.nn.Identity(),
        postprocessing=post,
        key_val_metric={key: handlers.pop(key)},
        additional_metrics=handlers,
        metric_cmp_fn=lambda current, best: current < best,
        val_handlers=[
            MetricsSaver(
                save_dir=str(tmp_path),
                metrics="*",
                metric_details="*",
                batch_transform=lambda batch: [item["image"].meta for item in batch],  # row names: file names
            )
        ],
    )
    evaluator.run()
    return evaluator


def _read_raw(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], {r[0]: [float(v) for v in r[1:]] for r in rows[1:]}


def test_evaluator_run_with_handlers_and_metrics_saver(tmp_path):
    items = _wmh_like_data()
    io3 = from_engine(["prob", "label", "roi"])
    handlers = {
        "ece": ExpectedCalibrationError(output_transform=io3),
        "ece_pooled": ExpectedCalibrationError(pooled=True, output_transform=io3),
        "mce": ExpectedCalibrationError(calibration_reduction="maximum", output_transform=io3),
        "brier": BrierScore(output_transform=io3),
        "brier_plus": BrierScore(stratum="positive", output_transform=io3),
        "nll": NegativeLogLikelihood(output_transform=io3),
        "ece_ignore_index": ExpectedCalibrationError(ignore_index=2, output_transform=from_engine(["prob", "label"])),
    }
    engine = _run(items, handlers, tmp_path)
    probs = torch.stack([it["image"].as_tensor() for it in items])
    labels = torch.stack([it["label"].as_tensor() for it in items])
    mask = labels != 2

    def per_image(fn, **kw):
        return np.array([float(fn(probs[i : i + 1], labels[i : i + 1], mask=mask[i : i + 1], **kw)) for i in range(4)])

    want = {
        "ece": per_image(calibration_error),
        "mce": per_image(calibration_error, norm="max"),
        "brier": per_image(brier_score),
        "brier_plus": per_image(brier_score, stratum="positive"),
        "nll": per_image(negative_log_likelihood),
    }
    m = engine.state.metrics
    for k, v in want.items():
        assert m[k] == pytest.approx(v.mean(), rel=1e-9), k
    assert m["ece_ignore_index"] == pytest.approx(m["ece"], rel=1e-12)
    assert m["ece_pooled"] == pytest.approx(float(calibration_error(probs, labels, mask=mask)), rel=1e-9)
    assert abs(m["ece_pooled"] - m["ece"]) > 1e-4  # pooled and per-image really are different numbers
    # MetricsSaver: one row per image (named from the MetaTensor filename), one column per reported class
    # (MONAI names them class0, class1, ... in reported order: here class0 is the foreground)
    for k, v in want.items():
        header, rows = _read_raw(tmp_path / f"{k}_raw.csv")
        assert len(rows) == 4, k
        got = np.array([rows[f"subject_{i}.nii.gz"][0] for i in range(4)])
        np.testing.assert_allclose(got, v, atol=5.1e-5, err_msg=k)  # MONAI writes raw CSVs with 4 decimals
    with open(tmp_path / "metrics.csv") as f:
        saved = {row[0]: float(row[1]) for row in csv.reader(f)}
    assert saved["brier"] == pytest.approx(m["brier"], rel=1e-12)  # full precision there
    assert engine.state.best_metric == pytest.approx(m["ece"])


def test_handler_rejects_bad_output_and_bad_probabilities(tmp_path):
    handler = ExpectedCalibrationError()
    with pytest.raises(ValueError, match="\\(y_pred, y\\)"):
        handler.update([torch.zeros(1, 2, 4)])
    logits = torch.randn(1, 2, 8)
    with pytest.raises(ValueError, match="lie in|sum to 1"):
        handler.update((logits, torch.zeros(1, 1, 8)))
    # the two-item form and a batch tensor mask work without an engine
    probs = torch.softmax(torch.randn(2, 2, 8), 1)
    label = torch.randint(0, 2, (2, 1, 8))
    handler.update((probs, label))
    handler.update((probs, label, torch.ones(2, 1, 8, dtype=torch.bool)))
    assert handler.metric_fn.get_buffer().shape == (4, 1)
