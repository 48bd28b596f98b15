"""CalibrateProbabilitiesd inside a MONAI Compose; CalibratorFitHandler inside an Ignite / MONAI evaluator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator
from monai.transforms import Activationsd, AsDiscreted, Compose, CopyItemsd

from monai_meep.calibration import (
    CalibrateProbabilities,
    CalibrateProbabilitiesd,
    CalibratorFitHandler,
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    load_calibrator,
)


@pytest.fixture
def fitted_platt(binary_data):
    logits, y, _ = binary_data(20_000, seed=0, sharpen=3.0, shift=0.5)
    return PlattScaling(2).update(logits, y).fit()


def test_transform_in_compose_keeps_metadata(tmp_path, fitted_platt):
    path = fitted_platt.save(tmp_path / "cal.json")
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    logits = MetaTensor(torch.randn(2, 8, 8, 4) * 4, affine=affine)
    post = Compose(
        [
            Activationsd(keys="pred", softmax=True),
            CopyItemsd(keys="pred", names="prob"),
            CalibrateProbabilitiesd(keys="prob", calibrator=str(path)),
            AsDiscreted(keys="pred", argmax=True),
        ]
    )
    out = post({"pred": logits, "label": torch.zeros(1, 8, 8, 4)})
    expected = fitted_platt(logits.as_tensor().unsqueeze(0))[0]
    assert isinstance(out["prob"], MetaTensor)
    torch.testing.assert_close(out["prob"].affine, affine)
    torch.testing.assert_close(out["prob"].as_tensor(), expected, atol=1e-5, rtol=0)
    assert out["pred"].shape == (1, 8, 8, 4)  # the discretised prediction is untouched by the calibration
    # logits in, a calibrator instance, numpy arrays, batched input
    t = CalibrateProbabilitiesd(keys="x", calibrator=fitted_platt, input_type="logits")
    torch.testing.assert_close(t({"x": logits.as_tensor()})["x"], expected)
    arr = CalibrateProbabilities(fitted_platt, input_type="logits")(logits.as_tensor().numpy())
    assert isinstance(arr, np.ndarray) and np.allclose(arr, expected.numpy(), atol=1e-6)
    batched = CalibrateProbabilities(fitted_platt, input_type="logits", batched=True)(logits.as_tensor()[None])
    torch.testing.assert_close(batched[0], expected)


def test_transform_errors(tmp_path, fitted_platt):
    with pytest.raises(ValueError, match="not fitted"):
        CalibrateProbabilitiesd(keys="prob", calibrator=PlattScaling(2))
    with pytest.raises(ValueError, match="no calibrator file"):
        CalibrateProbabilitiesd(keys="prob", calibrator=str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="fitted for 2 classes, expected 3"):
        CalibrateProbabilitiesd(keys="prob", calibrator=fitted_platt.save(tmp_path / "c.json"), num_classes=3)
    t = CalibrateProbabilitiesd(keys="prob", calibrator=fitted_platt)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 2"):
        t({"prob": torch.rand(3, 4, 4)})


class _Fixed(torch.nn.Module):
    """A frozen 'network': 2-class logits from a 1-channel image (over-confident by a factor 3)."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(img), 3.0 * img + 0.5], dim=1)


def _val_data(n_items=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n_items):
        z = torch.randn(1, 24, 24, generator=g)
        label = (torch.rand(1, 24, 24, generator=g) < torch.sigmoid(z)).float()
        label[0, :2] = 2.0  # "other pathology": ignored
        items.append({"image": z, "label": label})
    return items


@pytest.mark.parametrize("cls", [PlattScaling, TemperatureScaling, IsotonicCalibration])
def test_handler_in_evaluator_writes_loadable_json(tmp_path, cls):
    data = _val_data()
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    handler = CalibratorFitHandler(cls(2), save_path=tmp_path / "models" / "cal.json", ignore_index=2)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=_Fixed())
    handler.attach(evaluator)
    evaluator.run()
    loaded = load_calibrator(tmp_path / "models" / "cal.json", num_classes=2)
    assert type(loaded) is cls
    # the same fit done by hand on the network outputs with the ignored voxels masked
    ref = cls(2)
    for item in data:
        x = _Fixed()(item["image"][None])
        y = item["label"][None]
        ref.update(x, torch.where(y == 2, 0, y), mask=y != 2)
    ref.fit()
    probe = _Fixed()(torch.linspace(-3, 3, 50).view(1, 1, 50))
    torch.testing.assert_close(loaded(probe), ref(probe), atol=0, rtol=0)
    # a second run refits from scratch (state reset at STARTED): same parameters, not doubled counts
    evaluator.run()
    torch.testing.assert_close(handler.calibrator(probe), ref(probe), atol=0, rtol=0)


def test_bundle_config_fragment(tmp_path):
    """The calibrate.json fragment of docs/calibration.md, on a toy network and data, through ConfigParser."""
    config = {
        "imports": ["$import monai_meep.calibration", "$import torch"],
        "bundle_root": str(tmp_path),
        "device": "$torch.device('cpu')",
        "network": "$tests_network",
        "validate": {"dataloader": "$tests_loader", "inferer": {"_target_": "SimpleInferer"}},
        "calibrator_path": "$@bundle_root + '/models/calibrator_platt.json'",
        "calibrator": {"_target_": "monai_meep.calibration.PlattScaling", "num_classes": 2, "activation": "softmax"},
        "calibrate": {
            "handlers": [
                {
                    "_target_": "monai_meep.calibration.CalibratorFitHandler",
                    "calibrator": "@calibrator",
                    "save_path": "@calibrator_path",
                    "ignore_index": 2,
                }
            ],
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "@validate#inferer",
                "postprocessing": None,
                "val_handlers": "@calibrate#handlers",
            },
        },
        "run": ["$@calibrate#evaluator.run()"],
    }
    parser = ConfigParser(config, globals={"tests_network": _Fixed(), "tests_loader": _val_data()})
    parser["network"] = _Fixed()
    parser["validate"]["dataloader"] = torch.utils.data.DataLoader(_val_data(), batch_size=3)
    parser.parse()
    parser.get_parsed_content("run")
    saved = json.loads((tmp_path / "models" / "calibrator_platt.json").read_text())
    assert saved["kind"] == "platt" and 0.2 < saved["params"]["a"][0] < 0.5  # network is 3x over-confident
