"""model-zoo conformance: a plain model.pt, ckpt_export to TorchScript, inference.json on its own."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export

from monai_meep.apps.bundle.runner import config_files
from monai_meep.apps.data import prepare_dataset
from monai_meep.apps.data.readers import volume_header

from .conftest import BUNDLES, error_chain, la_image_folder

ROOT = BUNDLES / "la_meep"
# the overrides that define the tiny network (inference.json knows nothing of train.json's)
NET = {"channels": [4, 8], "strides": [2], "scale": 0.2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantom_cache):
    from .conftest import TINY

    run_dir = tmp_path_factory.mktemp("la_run")
    wf = ConfigWorkflow(
        config_file=config_files("la", "train"),
        workflow_type="train",
        bundle_root=str(ROOT),
        **{**TINY["la"], "run_dir": str(run_dir)},
    )
    wf.initialize()
    wf.run()
    return run_dir


@pytest.mark.slow
def test_model_pt_is_a_plain_state_dict_and_exports_to_torchscript(trained, tmp_path):
    from monai.networks.nets import UNet

    state = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert all(torch.is_tensor(v) for v in state.values()), "model.pt must hold only the network's tensors"
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), norm="batch")
    net.load_state_dict(state)  # strict: what MONAI Label and plain PyTorch do
    ts = tmp_path / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ckpt_export(
            "network_def",
            filepath=str(ts),
            ckpt_file=str(trained / "models" / "model.pt"),
            meta_file=str(ROOT / "configs" / "metadata.json"),
            config_file=str(ROOT / "configs" / "inference.json"),
            bundle_root=str(ROOT),
            **NET,
        )
    scripted = torch.jit.load(str(ts))
    x = torch.randn(1, 1, 32, 32, 16)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


@pytest.mark.slow
def test_inference_json_runs_on_its_own(trained, tmp_path):
    test = prepare_dataset("la", num_subjects=8, scale=0.2)["test"]
    images = la_image_folder(test, tmp_path / "images")
    wf = ConfigWorkflow(
        config_file=str(ROOT / "configs" / "inference.json"),
        workflow_type="infer",
        bundle_root=str(ROOT),
        run_dir=str(trained),
        input_dir=str(images),
        num_workers=0,
        progress=False,
        **NET,
    )
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    for item in test:
        shape, _ = volume_header(item["image"], "image")
        prob = nib.load(str(trained / "predictions" / f"{item['subject']}_prob.nii.gz"))
        assert prob.shape[:3] == tuple(shape)
        p = np.asarray(prob.dataobj)
        assert p.min() >= 0 and p.max() <= 1 and (p > 0).mean() > 0.99, "the whole volume is predicted"
        for kind in ("seg", "entropy"):
            assert (trained / "predictions" / f"{item['subject']}_{kind}.nii.gz").is_file()

    # without input_dir: one clear message
    wf = ConfigWorkflow(
        config_file=str(ROOT / "configs" / "inference.json"),
        workflow_type="infer",
        bundle_root=str(ROOT),
        run_dir=str(trained),
        num_workers=0,
        progress=False,
        **NET,
    )
    wf.initialize()
    with pytest.raises(Exception) as info:
        wf.run()
    assert "needs --input_dir" in error_chain(info.value)
