"""One calibration accumulator per evaluator: handlers sharing a SharedCalibrationState read the probabilities once
per iteration and give exactly the values of separate handlers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine
from monai.transforms import Compose, CopyItemsd, Lambdad

from monai_meep.handlers import (
    BrierScore,
    ExpectedCalibrationError,
    NegativeLogLikelihood,
    ReliabilityDiagramSaver,
    SharedCalibrationState,
)
from monai_meep.metrics import (
    STATE_FILE,
    CalibrationHistogram,
    CalibrationState,
    ExpectedCalibrationErrorMetric,
    load_calibration_state,
)

from .test_calibration_handlers import _wmh_like_data

IO3 = from_engine(["prob", "label", "roi"])


def _handlers(state=None):
    kw = {"state": state} if state is not None else {"output_transform": IO3}
    return {
        "ece": ExpectedCalibrationError(**kw),
        "ece_pooled": ExpectedCalibrationError(pooled=True, **kw),
        "mce": ExpectedCalibrationError(calibration_reduction="maximum", **kw),
        "ace_adaptive": ExpectedCalibrationError(calibration_reduction="average", binning="adaptive", **kw),
        "brier": BrierScore(**kw),
        "brier_plus": BrierScore(stratum="positive", **kw),
        "brier_pooled": BrierScore(pooled=True, **kw),
        "nll": NegativeLogLikelihood(**kw),
    }


def _evaluate(items, tmp_path, state=None, epochs=1):
    handlers = _handlers(state)
    if state is None:
        saver = ReliabilityDiagramSaver(tmp_path, output_transform=IO3)
    else:
        saver = ReliabilityDiagramSaver(tmp_path, state=state)
    post = Compose([CopyItemsd(keys="pred", names="prob"), CopyItemsd(keys="label", names="roi"),
                    Lambdad(keys="roi", func=lambda x: x != 2)])  # fmt: skip
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(items), batch_size=2, num_workers=0),
        network=torch.nn.Identity(),
        postprocessing=post,
        key_val_metric={"ece": handlers.pop("ece")},
        additional_metrics=handlers,
        metric_cmp_fn=lambda current, best: current < best,
        val_handlers=[saver],
    )
    for e in range(epochs):
        evaluator.run(global_epoch=e + 1)
    return evaluator, saver


def _count(monkeypatch, cls, name):
    calls = []
    original = getattr(cls, name)

    def counted(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_shared_state_reads_once_per_iteration_and_equals_separate_handlers(tmp_path, monkeypatch):
    items = _wmh_like_data(n_images=5)  # batches of 2, 2, 1: three iterations
    separate, sep_saver = _evaluate(items, tmp_path / "separate")
    state_updates = _count(monkeypatch, CalibrationState, "update")
    hist_updates = _count(monkeypatch, CalibrationHistogram, "update")
    state = SharedCalibrationState(IO3, num_classes=2)
    shared, saver = _evaluate(items, tmp_path / "shared", state=state)
    assert len(state_updates) == 3 == state.num_updates  # one update per iteration for 8 metrics and the saver
    assert len(hist_updates) == 5  # one validated read per image
    # the same numbers, bit for bit: engine metrics, per-image tables, the diagram's table and the pooled state
    assert shared.state.metrics.keys() == separate.state.metrics.keys()
    for k, v in separate.state.metrics.items():
        assert shared.state.metrics[k] == v, k
    for k, v in separate.state.metric_details.items():
        assert torch.equal(shared.state.metric_details[k], v), k
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "shared" / "reliability.csv"), pd.read_csv(tmp_path / "separate" / "reliability.csv")
    )
    a, b = saver.last_histogram.state_dict(), sep_saver.last_histogram.state_dict()
    for k in a:
        assert (a[k] == b[k]).all() if isinstance(a[k], torch.Tensor) else a[k] == b[k], k
    on_disk = load_calibration_state(tmp_path / "shared" / STATE_FILE).state_dict()
    assert all(torch.equal(on_disk[k], v) for k, v in a.items() if isinstance(v, torch.Tensor))


def test_state_resets_each_epoch(tmp_path):
    items = _wmh_like_data(n_images=4)
    state = SharedCalibrationState(IO3)
    once, _ = _evaluate(items, tmp_path / "one", state=state)
    first = dict(once.state.metrics)
    state2 = SharedCalibrationState(IO3)
    twice, saver = _evaluate(items, tmp_path / "two", state=state2, epochs=2)
    assert twice.state.metrics == first  # the second epoch did not add to the first
    assert int(saver.last_histogram.num_voxels) == int(state2.histogram.num_voxels)
    assert pd.read_csv(tmp_path / "two" / "reliability.csv")["epoch"].unique().tolist() == [2]


def test_shared_state_refusals():
    state = SharedCalibrationState(IO3, num_sub_bins=600)
    with pytest.raises(ValueError, match="does not divide"):
        ExpectedCalibrationError(num_bins=7, state=state)
    with pytest.raises(ValueError, match="set ignore_index"):
        BrierScore(ignore_index=2, state=state)
    with pytest.raises(TypeError, match="SharedCalibrationState"):
        BrierScore(state=CalibrationState())
    with pytest.raises(ValueError, match="the state's"):
        ReliabilityDiagramSaver("unused", state=state, mask_key="roi")
    metric = ExpectedCalibrationErrorMetric(state=state)
    with pytest.raises(RuntimeError, match="accumulate"):
        metric(torch.full((1, 2, 4), 0.5), torch.zeros(1, 1, 4))
    engine_a, engine_b = Engine(lambda e, b: b), Engine(lambda e, b: b)
    state.attach(engine_a)
    state.attach(engine_a)  # idempotent
    with pytest.raises(ValueError, match="one engine"):
        state.attach(engine_b)


def test_metrics_share_a_state_without_ignite():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(3, 3, 6, 7, generator=g), 1)
    target = torch.randint(0, 3, (3, 1, 6, 7), generator=g)
    state = CalibrationState()
    shared = [ExpectedCalibrationErrorMetric(include_background=True, state=state),
              ExpectedCalibrationErrorMetric(mode="top_label", state=state)]  # fmt: skip
    alone = [ExpectedCalibrationErrorMetric(include_background=True), ExpectedCalibrationErrorMetric(mode="top_label")]
    for i in range(3):
        hists = state.update(probs[i : i + 1], target[i : i + 1])
        for m in shared:
            m.accumulate(hists)
        for m in alone:
            m(probs[i : i + 1], target[i : i + 1])
    for s, a in zip(shared, alone, strict=True):
        assert torch.equal(s.aggregate(), a.aggregate())
        assert torch.equal(s.aggregate(pooled=True), a.aggregate(pooled=True))
