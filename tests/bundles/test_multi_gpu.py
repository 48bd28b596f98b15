"""multi_gpu_train.json / multi_gpu_evaluate.json as 2 CPU processes (torchrun, gloo) match one process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigWorkflow

from monai_meep.apps.bundle.runner import config_files, run_bundle

from .conftest import BUNDLES

# Deterministic and decomposable so that DDP's gradient average equals the single-process gradient: CE (a mean over
# equally many voxels per sample), instance norm (per sample), the evaluation crop instead of random crops, no
# shuffling. Rank r then sees items r, r + 2, ... and one DDP step covers the same two items as one 2-item batch.
# SGD rather than Adam: the conv biases before instance norm have a zero gradient in exact arithmetic, and Adam
# turns the different rounding noise of the two set-ups into full-size steps.
EXACT = {
    "base_loss": "ce",
    "network_def#norm": "instance",
    "train_shuffle": False,
    "val_interval": 10,
    "train#preprocessing": "$monai_meep.apps.data.la_transforms('eval', crop_size=@patch_size)",
    "train_files": "$@datalist['training'][:4]",
    "optimizer#_target_": "torch.optim.SGD",
    "learning_rate": 0.1,
}


def _torchrun(workflow: str, overrides: dict, tmp_path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        json.dumps(config_files("la", workflow)),
    ]
    for k, v in {"bundle_root": str(BUNDLES / "la_meep"), **overrides}.items():
        cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _raw(path):
    with open(path) as f:
        return {r["filename"]: float(r["mean"]) for r in csv.DictReader(f)}


@pytest.mark.slow
def test_two_process_gloo_train_and_evaluate_match_one_process(tiny, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    base = {**tiny["la"], **EXACT}
    # single process, batch 2 == two processes, batch 1 each
    wf = ConfigWorkflow(
        config_file=config_files("la", "train"),
        workflow_type="train",
        bundle_root=str(BUNDLES / "la_meep"),
        **{**base, "run_dir": str(one), "batch_size": 2},
    )
    wf.initialize()
    init = {k: v.clone() for k, v in wf.parser.get_parsed_content("network").state_dict().items()}
    wf.run()
    wf.finalize()
    _torchrun("multi_gpu_train", {**base, "run_dir": str(two), "batch_size": 1}, tmp_path)
    a = torch.load(one / "models" / "last_checkpoint_epoch=1.pt", weights_only=True)["model"]
    b = torch.load(two / "models" / "last_checkpoint_epoch=1.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()  # DDP's "module." prefix is stripped by the saver
    assert max((a[k].float() - init[k].float()).abs().max().item() for k in a) > 1e-3, "training changed nothing"
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"weights differ at {k}")

    # evaluation of the same checkpoint: per-subject values identical, every test subject scored once
    ckpt = str(one / "models" / "last_checkpoint_epoch=1.pt")
    ev = {**tiny["la"], "run_dir": str(one), "save_maps": False, "ckpt_path": ckpt, "network_def#norm": "instance"}
    run_bundle("la", "evaluate", ev)
    ev2 = {**ev, "output_dir": str(tmp_path / "eval2")}
    _torchrun("multi_gpu_evaluate", ev2, tmp_path)
    for name in ("test_mean_dice", "test_ece", "test_brier", "test_brier_plus", "test_hd_mm"):
        r1, r2 = _raw(one / "eval" / "test" / f"{name}_raw.csv"), _raw(tmp_path / "eval2" / "test" / f"{name}_raw.csv")
        assert r1.keys() == r2.keys() and len(r1) >= 2, (name, r1, r2)
        for s in r1:
            assert r1[s] == pytest.approx(r2[s], rel=1e-6, abs=1e-9), (name, s)
