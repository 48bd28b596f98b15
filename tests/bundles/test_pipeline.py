"""train -> evaluate -> calibrate -> infer on a tiny LA phantom; resume; bad input fails before training."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from monai_meep.apps.bundle.runner import config_files
from monai_meep.apps.data import prepare_dataset, roi_size_for_scale
from monai_meep.apps.data.readers import volume_header
from monai_meep.metrics import STATE_FILE, calibration_error_from_histogram, load_calibration_state

from .conftest import BUNDLES, error_chain, la_image_folder


def _workflow(task, workflow, overrides, wtype):
    return ConfigWorkflow(
        config_file=config_files(task, workflow),
        workflow_type=wtype,
        bundle_root=str(BUNDLES / f"{task}_meep"),
        **overrides,
    )


def _run(task, workflow, overrides, wtype="train", on_epoch=None):
    wf = _workflow(task, workflow, overrides, wtype)
    wf.initialize()
    assert wf.check_properties() == []
    if on_epoch is not None:
        wf.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: on_epoch.append(e.state.epoch))
    wf.run()
    wf.finalize()
    return wf


@pytest.mark.slow
def test_train_evaluate_calibrate_infer_la(tiny, tmp_path):
    o = {**tiny["la"], "run_dir": str(tmp_path), "max_epochs": 2, "regularizer": "meep_kl"}
    _run("la", "train", o)
    models = tmp_path / "models"
    assert (models / "model.pt").is_file() and (models / "last_checkpoint_epoch=2.pt").is_file()
    assert list((tmp_path / "logs").glob("events.out.tfevents*")), "no TensorBoard events"

    _run("la", "evaluate", o, "eval")
    ev = tmp_path / "eval" / "test"
    test = prepare_dataset("la", num_subjects=o["num_subjects"], scale=o["scale"])["test"]
    # test-split metrics are named test_* (the validation during training keeps val_*); every file names the region
    assert not list(ev.glob("val_*")), sorted(p.name for p in ev.iterdir())
    region = "heart-centred crop " + "x".join(str(s) for s in roi_size_for_scale("la", o["scale"])) + " voxels"
    for name in ("test_mean_dice", "test_hd_mm", "test_hd95_mm", "test_brier", "test_brier_plus", "test_ece"):
        with open(ev / f"{name}_raw.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(test), name
        assert {r["region"] for r in rows} == {region}, name
        values = [float(r["mean"]) for r in rows]
        if name not in ("test_hd_mm", "test_hd95_mm"):  # an empty prediction gives HD = inf (MONAI's convention)
            assert all(np.isfinite(values)), (name, values)
        with open(ev / f"{name}_summary.csv") as f:
            assert {r["region"] for r in csv.DictReader(f)} == {region}, name
    with open(ev / "metrics.csv") as f:
        lines = list(csv.reader(f))
    assert {ln[0] for ln in lines} >= {"test_mean_dice", "test_ece"} and {ln[2] for ln in lines} == {region}
    with open(ev / "reliability.csv") as f:
        assert {r["region"] for r in csv.DictReader(f)} == {region}
    assert (ev / "reliability.png").stat().st_size > 0 and (ev / "probability_histogram.png").stat().st_size > 0
    # the exact pooled state beside the CSVs: its 10-bin counts are the bin table's, its 15-bin ECE the table's
    state, meta = load_calibration_state(ev / STATE_FILE, with_meta=True)
    assert meta["region"] == region and meta["classes"] == [1]
    with open(ev / "reliability.csv") as f:
        bins = list(csv.DictReader(f))
    assert [int(r["count"]) for r in bins] == state.bin_statistics(10)[0][1].tolist()
    assert float(bins[0]["ece"]) == pytest.approx(float(calibration_error_from_histogram(state, 15)[0]), rel=1e-12)
    # maps are written in the original image space: the h5 volume's grid and spacing
    for item in test:
        shape, affine = volume_header(item["image"], "image")
        for kind in ("prob", "entropy", "seg"):
            img = nib.load(str(ev / "maps" / f"{item['subject']}_{kind}.nii.gz"))
            assert img.shape[:3] == tuple(shape), (kind, img.shape, shape)
            np.testing.assert_allclose(np.abs(np.diag(img.affine)[:3]), np.abs(np.diag(affine)[:3]), rtol=1e-4)
        prob = nib.load(str(ev / "maps" / f"{item['subject']}_prob.nii.gz")).get_fdata()
        ent = nib.load(str(ev / "maps" / f"{item['subject']}_entropy.nii.gz")).get_fdata()
        assert prob.min() >= 0 and prob.max() <= 1 and ent.min() >= 0 and ent.max() <= np.log(2) + 1e-6
        # sliding-window inference over the whole volume: no band of exact zeros outside a centre crop
        assert (prob == 0).mean() < 0.01, f"{(prob == 0).mean():.0%} of the map is exactly 0"

    _run("la", "calibrate", o, "eval")
    for method in ("platt", "isotonic", "temperature"):
        assert (models / f"calibrator_{method}.json").is_file()
    _run("la", "evaluate", {**o, "calibrator": "isotonic", "save_maps": False}, "eval")
    assert (tmp_path / "eval" / "test_calibrator_isotonic" / "test_ece_raw.csv").is_file()

    images = la_image_folder(test, tmp_path / "new_images")
    _run("la", "inference", {**o, "calibrator": "platt", "input_dir": str(images)}, "infer")
    preds = sorted(p.name for p in (tmp_path / "predictions").glob("*.nii.gz"))
    assert len(preds) == 3 * len(test)


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tiny, tmp_path):
    o = {**tiny["la"], "run_dir": str(tmp_path), "val_interval": 1}
    first: list[int] = []
    wf1 = _run("la", "train", o, on_epoch=first)
    assert first == [1]
    dice = [wf1.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]]
    saved = torch.load(tmp_path / "models" / "last_checkpoint_epoch=1.pt", weights_only=True)
    second: list[int] = []
    wf = _workflow("la", "train", {**o, "max_epochs": 3}, "train")
    wf.initialize()
    trainer = wf.trainer
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: second.append(e.state.epoch))
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: dice.append(e.state.metrics["val_mean_dice"]))
    # the weights the second run starts from are the saved ones, not a fresh initialisation
    start: dict = {}
    net = wf.parser.get_parsed_content("network")
    tracker = wf.parser.get_parsed_content("validate#best_saver")._key_metric_checkpoint

    def _at_first_step(engine):
        start.update({k: v.clone() for k, v in net.state_dict().items()})

    trainer.add_event_handler(Events.ITERATION_STARTED(once=1 + saved["trainer"]["iteration"]), _at_first_step)
    # the saver restores its tracker when the first validation starts; this handler runs after it
    evaluator.add_event_handler(
        Events.STARTED, lambda e: start.setdefault("best", [item.priority for item in tracker._saved])
    )
    wf.run()
    assert second == [2, 3], "the rerun must continue at epoch 2, not start over"
    for k, v in saved["model"].items():
        torch.testing.assert_close(start[k], v)
    assert start["best"] == [pytest.approx(dice[0])], "best-Dice tracker restored from best_metric.json"
    assert wf.parser.get_parsed_content("optimizer").state_dict()["state"], "optimizer state restored and used"
    assert [p.name for p in (tmp_path / "models").glob("last_*.pt")] == ["last_checkpoint_epoch=3.pt"]
    # the best-Dice tracker survives the resume: model.pt holds the best of all three validations
    assert len(tracker._saved) == 1 and tracker._saved[0].priority == pytest.approx(max(dice)), (tracker._saved, dice)


@pytest.mark.slow
def test_bad_input_fails_before_training(tiny, tmp_path):
    o = {**tiny["la"], "run_dir": str(tmp_path)}
    cases = [
        ({"dataset_dir": str(tmp_path / "nowhere")}, "does not exist"),
        ({"base_loss": "dyce"}, "valid names are dice, ce, focal"),
        ({"regularizer": "meep"}, "valid names are none, meep_entropy"),
        ({"backbone": "vnet"}, "valid values are unet, resunet"),
    ]
    for extra, message in cases:
        wf = _workflow("la", "train", {**o, **extra}, "train")
        wf.initialize()
        with pytest.raises(Exception) as info:
            wf.run()
        assert message in error_chain(info.value), (extra, error_chain(info.value))
        assert not (tmp_path / "models" / "last_checkpoint_epoch=1.pt").exists()

    # a layout with a missing file
    broken = tmp_path / "la_broken"
    (broken / "SUBJ1").mkdir(parents=True)
    (broken / "train.list").write_text("SUBJ1\nSUBJ2\n")
    (broken / "test.list").write_text("SUBJ3\n")
    wf = _workflow("la", "train", {**o, "dataset_dir": str(broken)}, "train")
    wf.initialize()
    with pytest.raises(Exception) as info:
        wf.run()
    assert "SUBJ" in error_chain(info.value) or "mri_norm2" in error_chain(info.value)

    # a checkpoint from another network: evaluation and resume both refuse it with the reason
    _run("la", "train", o)
    # (training names the setting that differs, from run_settings.json; evaluation checks the weights' shapes)
    for workflow, wtype, message in (
        ("evaluate", "eval", "different network"),
        ("train", "train", "network.channels [4, 8] -> [8, 16]"),
    ):
        wf = _workflow("la", workflow, {**o, "channels": [8, 16], "max_epochs": 2}, wtype)
        wf.initialize()
        with pytest.raises(Exception) as info:
            wf.run()
        assert message in error_chain(info.value), error_chain(info.value)
    assert not (tmp_path / "models" / "last_checkpoint_epoch=2.pt").exists()
