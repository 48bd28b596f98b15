"""Run directories record the settings of their model: another model is refused, a finished one says so."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from monai.bundle import ConfigWorkflow

from monai_meep.apps.bundle.runner import config_files
from monai_meep.apps.bundle.support import settings_differences

from .conftest import BUNDLES, error_chain


def _workflow(overrides):
    return ConfigWorkflow(
        config_file=config_files("la", "train"),
        workflow_type="train",
        bundle_root=str(BUNDLES / "la_meep"),
        **overrides,
    )


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_settings_differences_name_the_convenience_and_the_component():
    old = {"regularizer": "none", "max_epochs": 2, "loss": {"_target_": "monai.losses.DiceLoss", "smooth_nr": 1e-5}}
    assert settings_differences(old, {**old, "max_epochs": 9}) == []  # training longer is a resume
    new = {**old, "regularizer": "meep_kl", "loss": {"_target_": "monai_meep.losses.MEEPLoss"}}
    assert settings_differences(old, new) == ["regularizer 'none' -> 'meep_kl'", "loss DiceLoss -> MEEPLoss"]
    edited = {**old, "loss": {"_target_": "monai.losses.DiceLoss", "smooth_nr": 0.5}}
    assert settings_differences(old, edited) == ["loss.smooth_nr 1e-05 -> 0.5"]


@pytest.mark.slow
def test_other_model_refused_finished_run_reported_resume_false_starts_over(tiny, tmp_path, capfd):
    o = {**tiny["la"], "run_dir": str(tmp_path)}
    wf = _workflow(o)
    wf.initialize()
    wf.run()
    models = tmp_path / "models"
    record = json.loads((models / "run_settings.json").read_text())
    assert record["regularizer"] == "none" and record["loss"]["_target_"].endswith("DiceLoss")
    assert record["network"]["channels"] == [4, 8] and record["optimizer"]["lr"] == pytest.approx(1e-4)
    digest = _md5(models / "model.pt")

    # the README's "now with MEEP" in the same folder: refused before training, with the way out
    for extra, diff in (
        ({"regularizer": "meep_kl", "max_epochs": 2}, "regularizer 'none' -> 'meep_kl'"),
        ({"learning_rate": 1e-3}, "learning_rate 0.0001 -> 0.001"),
        # a component edited in JSON, as model-zoo users do: recorded through the loss's own arguments
        ({"base_losses#dice#smooth_nr": 0.5}, "loss.smooth_nr 1e-05 -> 0.5"),
    ):
        wf = _workflow({**o, **extra})
        wf.initialize()
        with pytest.raises(Exception) as info:
            wf.run()
        msg = error_chain(info.value)
        assert "trained with other settings" in msg and diff in msg, msg
        assert "--run_dir" in msg and "--resume false" in msg, msg
        assert _md5(models / "model.pt") == digest and not (models / "last_checkpoint_epoch=2.pt").exists()

    # the same settings again: finished, said so, nothing touched
    capfd.readouterr()
    wf = _workflow(o)
    wf.initialize()
    wf.run()
    assert "is finished (1 of 1 epochs)" in capfd.readouterr().out
    assert _md5(models / "model.pt") == digest

    # resume=false starts over with the new settings
    wf = _workflow({**o, "regularizer": "meep_kl", "resume": False})
    wf.initialize()
    wf.run()
    assert json.loads((models / "run_settings.json").read_text())["regularizer"] == "meep_kl"
    assert [p.name for p in models.glob("last_*.pt")] == ["last_checkpoint_epoch=1.pt"]
    assert set(torch.load(models / "model.pt", weights_only=True)) == set(wf.network_def.state_dict())
    # the training loss and the MEEP parts are the trainer's epoch metrics: StatsHandler prints them and
    # TensorBoardStatsHandler logs them (the console is not checked here: earlier workflows in the same process
    # reconfigure logging)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    parts = {"train_loss", "train_seg_loss", "train_regularizer", "train_error_fraction"}
    assert parts <= set(wf.trainer.state.metrics)
    tags: set[str] = set()
    for events in (tmp_path / "logs").glob("events.out.tfevents*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"train_loss", "train_seg_loss", "train_regularizer", "train_error_fraction", "val_mean_dice"} <= tags, tags
