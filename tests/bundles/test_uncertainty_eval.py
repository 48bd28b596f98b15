"""The bundles' evaluation-time uncertainty baselines (``--uncertainty``): a deep ensemble's probability map is the
mean of its members' maps, MC dropout and flip TTA run through the same metrics and maps, and bad settings fail with
a message naming the key."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_meep.apps.data import prepare_dataset

from .conftest import error_chain
from .test_pipeline import _run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny LA models (seeds 0 and 1, dropout 0.2), each evaluated alone with its maps."""
    from .conftest import TINY

    root = tmp_path_factory.mktemp("uq")
    runs = []
    for seed in (0, 1):
        o = {**TINY["la"], "run_dir": str(root / f"seed{seed}"), "seed": seed, "dropout": 0.2}
        _run("la", "train", o)
        _run("la", "evaluate", o, "eval")
        runs.append(o)
    return runs


def _prob_maps(eval_dir):
    return {p.name: nib.load(str(p)).get_fdata() for p in sorted((eval_dir / "maps").glob("*_prob.nii.gz"))}


def _dice(eval_dir):
    with open(eval_dir / "test_mean_dice_raw.csv") as f:
        return [float(r["mean"]) for r in csv.DictReader(f)]


def test_ensemble_map_is_the_mean_of_its_members(two_models, tmp_path):
    a, b = two_models
    ckpts = [f"{o['run_dir']}/models/model.pt" for o in two_models]
    ev = tmp_path / "ens"
    _run("la", "evaluate", {**a, "uncertainty": "ensemble", "ensemble_ckpts": ckpts, "eval_dir": str(ev)}, "eval")
    maps = _prob_maps(ev)
    ma, mb = (_prob_maps(Path(o["run_dir"]) / "eval" / "test") for o in two_models)
    test = prepare_dataset("la", num_subjects=a["num_subjects"], scale=a["scale"])["test"]
    assert len(maps) == len(test) and maps.keys() == ma.keys() == mb.keys()
    for name, m in maps.items():
        np.testing.assert_allclose(m, (ma[name] + mb[name]) / 2, atol=2e-6)
        assert not np.allclose(ma[name], mb[name], atol=1e-3)  # the members differ: the test can fail
    assert len(_dice(ev)) == len(test)


@pytest.mark.parametrize("method", ["tta", "mc_dropout"])
def test_tta_and_mc_dropout_score_a_probability_map(two_models, tmp_path, method):
    o = {**two_models[0], "uncertainty": method, "mc_samples": 3, "eval_dir": str(tmp_path / method)}
    _run("la", "evaluate", o, "eval")
    single = _prob_maps(Path(o["run_dir"]) / "eval" / "test")
    maps = _prob_maps(tmp_path / method)
    assert maps.keys() == single.keys()
    for name, m in maps.items():
        assert 0.0 <= m.min() and m.max() <= 1.0
        # the averaged map is another map than the single deterministic pass (flips / dropout masks differ)
        assert np.abs(m - single[name]).max() > 1e-4, name
    assert all(np.isfinite(_dice(tmp_path / method)))


def test_unknown_uncertainty_names_the_valid_values(two_models, tmp_path):
    o = {**two_models[0], "eval_dir": str(tmp_path / "bad"), "uncertainty": "ensembles"}
    with pytest.raises(Exception) as exc:
        _run("la", "evaluate", o, "eval")
    assert "ensembles" in error_chain(exc.value) and "mc_dropout" in error_chain(exc.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "mc_dropout", "dropout": 0.0}, "dropout is 0"),
        ({"method": "ensemble", "ensemble_ckpts": []}, "two or more ensemble_ckpts"),
        ({"method": "tta", "ensemble_ckpts": ["a.pt", "b.pt"]}, "ensemble_ckpts is for uncertainty 'ensemble'"),
        ({"method": "ensemble", "ensemble_ckpts": ["missing0.pt", "missing1.pt"]}, "not found"),
    ],
)
def test_bad_uncertainty_settings(kwargs, message):
    import torch
    from monai.inferers import SimpleInferer

    from monai_meep.apps.bundle.uncertainty import evaluation_inferer

    with pytest.raises(ValueError, match=message):
        evaluation_inferer(inferer=SimpleInferer(), network_def=torch.nn.Conv3d(1, 2, 1), **kwargs)


def test_none_keeps_the_bundle_inferer_and_members_of_another_network_are_refused(tmp_path):
    import torch
    from monai.inferers import SimpleInferer

    from monai_meep.apps.bundle.uncertainty import evaluation_inferer

    sw = SimpleInferer()
    assert evaluation_inferer("none", sw) is sw
    torch.save(torch.nn.Conv3d(1, 3, 1).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        evaluation_inferer("ensemble", sw, torch.nn.Conv3d(1, 2, 1), [str(tmp_path / "other.pt")] * 2)
