"""PreciseMetricsSaver keeps the significant digits that MONAI's MetricsSaver rounds away."""

from __future__ import annotations

import csv

import torch
from ignite.engine import Engine, Events
from monai.handlers import MetricsSaver

from monai_meep.handlers import PreciseMetricsSaver

DETAILS = torch.tensor([[8.25e-4], [1.234567e-5]], dtype=torch.float64)


def _run(saver_cls, out_dir) -> list[list[str]]:
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _fill(e):  # registered before the saver, so it runs first
        e.state.metrics = {"brier": float(DETAILS.mean())}
        e.state.metric_details = {"brier": DETAILS}

    saver_cls(save_dir=str(out_dir), metrics="*", metric_details="*", batch_transform=lambda b: b).attach(engine)
    engine.run([[{"filename_or_obj": "a.nii.gz"}, {"filename_or_obj": "b.nii.gz"}]], max_epochs=1)
    with open(out_dir / "brier_raw.csv") as f:
        return list(csv.reader(f))


def test_per_subject_values_keep_their_digits(tmp_path):
    (tmp_path / "monai").mkdir()
    (tmp_path / "ours").mkdir()
    monai_rows = _run(MetricsSaver, tmp_path / "monai")
    our_rows = _run(PreciseMetricsSaver, tmp_path / "ours")
    ours = [float(r[1]) for r in our_rows[1:]]
    theirs = [float(r[1]) for r in monai_rows[1:]]
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64), DETAILS[:, 0], rtol=1e-6, atol=0)
    assert theirs[1] == 0.0  # MONAI's 4 decimals lose a 1.2e-5 value entirely: the reason this class exists


def test_class_labels_name_the_columns(tmp_path):
    import pytest

    def run(labels, out):
        out.mkdir()
        engine = Engine(lambda e, b: None)

        @engine.on(Events.EPOCH_COMPLETED)
        def _fill(e):
            e.state.metrics = {"brier": float(DETAILS.mean())}
            e.state.metric_details = {"brier": DETAILS}

        PreciseMetricsSaver(save_dir=str(out), metrics="*", metric_details="*", batch_transform=lambda b: b,
                            class_labels=labels).attach(engine)  # fmt: skip
        engine.run([[{"filename_or_obj": "a.nii.gz"}, {"filename_or_obj": "b.nii.gz"}]], max_epochs=1)
        with open(out / "brier_raw.csv") as f:
            return list(csv.reader(f))

    rows = run(["foreground"], tmp_path / "named")
    assert rows[0] == ["filename", "foreground", "mean"]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(DETAILS[:, 0].tolist(), rel=1e-6)  # digits kept too
    with pytest.raises(ValueError, match="1 class column"):
        run(["background", "foreground"], tmp_path / "wrong")


def test_region_is_stated_in_every_file(tmp_path):
    import pytest

    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _fill(e):
        e.state.metrics = {"test_brier": float(DETAILS.mean())}
        e.state.metric_details = {"test_brier": DETAILS}

    region = "heart-centred crop 48x48x32 voxels"
    saver = PreciseMetricsSaver(save_dir=str(tmp_path), metrics="*", metric_details="*", summary_ops="*",
                                batch_transform=lambda b: b, class_labels=["foreground"], region=region)  # fmt: skip
    saver.attach(engine)
    engine.run([[{"filename_or_obj": "a.nii.gz"}, {"filename_or_obj": "b.nii.gz"}]], max_epochs=1)
    with open(tmp_path / "test_brier_raw.csv", newline="") as f:
        raw = list(csv.DictReader(f))
    assert [r["region"] for r in raw] == [region, region] and list(raw[0]) == [
        "filename",
        "foreground",
        "mean",
        "region",
    ]
    assert [float(r["foreground"]) for r in raw] == pytest.approx(DETAILS[:, 0].tolist(), rel=1e-6)
    with open(tmp_path / "test_brier_summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert {r["class"] for r in summary} == {"foreground", "mean"} and {r["region"] for r in summary} == {region}
    with open(tmp_path / "metrics.csv", newline="") as f:
        (line,) = list(csv.reader(f))  # MONAI's header-less name,value lines, the region a third field
    assert line[0] == "test_brier" and float(line[1]) == pytest.approx(float(DETAILS.mean())) and line[2] == region
    with pytest.raises(ValueError, match="delimiter"):
        PreciseMetricsSaver(save_dir=str(tmp_path), region="crop, 48 voxels")
