"""The calibration baselines by name: build_loss, MEEP wrapping, and the bundles' base_losses components."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from monai_meep.apps.bundle.runner import config_files
from monai_meep.apps.loss_factory import BASELINE_LOSSES, build_loss, paper_lambda
from monai_meep.losses import (
    DiceCEML1ACELoss,
    FLSDLoss,
    IndexNACLLoss,
    LabelSmoothingCELoss,
    LabelSmoothingDiceLoss,
    MbLSLoss,
    MEEPLoss,
    SVLSLoss,
)

# many tiny torch ops: one intra-op thread (as tests/losses/conftest.py sets for the loss tests)
pytestmark = pytest.mark.usefixtures("single_thread")

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
EXPECTED = {
    "ls": LabelSmoothingCELoss,
    "ls_dice": LabelSmoothingDiceLoss,
    "svls": SVLSLoss,
    "mbls": MbLSLoss,
    "nacl": IndexNACLLoss,
    "ml1ace": DiceCEML1ACELoss,
    "ml1ace_soft": DiceCEML1ACELoss,
    "flsd": FLSDLoss,
}


def test_every_baseline_name_is_built():
    assert set(BASELINE_LOSSES) == set(EXPECTED)
    x, y = torch.randn(2, 2, 4, 4, 4), torch.randint(0, 3, (2, 1, 4, 4, 4))  # label 2: WMH "other pathology"
    for name, cls in EXPECTED.items():
        loss = build_loss(name, ignore_index=2)
        assert type(loss) is cls and loss.ignore_index == 2, name
        assert torch.isfinite(loss(x, y)), name
    assert build_loss("ml1ace_soft").ace.binning == "soft" and build_loss("ml1ace").ace.binning == "hard"
    assert build_loss("nacl", spatial_dims=2).nacl.dim == 2


def test_baselines_take_meep_with_an_explicit_weight_only():
    wrapped = build_loss("svls", "meep_kl", weight=0.3, ignore_index=2)
    assert isinstance(wrapped, MEEPLoss) and isinstance(wrapped.loss, SVLSLoss) and wrapped.weight == 0.3
    with pytest.raises(ValueError, match="no MEEP lambda for base loss 'svls'"):
        build_loss("svls", "meep_kl", task="la")
    with pytest.raises(ValueError, match="no MEEP lambda"):
        paper_lambda("wmh", "mbls")
    assert paper_lambda("wmh", "mbls", "none") == 0.0  # the bundles evaluate it for the unused MEEP entries
    with pytest.raises(ValueError, match="valid names are dice, ce, focal, ls"):
        build_loss("svls2")


def _parser(task, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(task, "train"))
    parser.update({"bundle_root": str(BUNDLES / f"{task}_meep"), **overrides})
    return parser


@pytest.mark.parametrize("task", ["la", "wmh"])
def test_bundle_base_loss_override_selects_each_baseline(task):
    """``--base_loss <name>`` gives the factory's loss: same class, same arguments, same value."""
    if str(BUNDLES.parent) not in sys.path:  # bundle configs import monai_meep from the repository
        sys.path.insert(0, str(BUNDLES.parent))
    ii = 2 if task == "wmh" else None
    x, y = torch.randn(2, 2, 4, 4, 4), torch.randint(0, 2, (2, 1, 4, 4, 4))
    for name in BASELINE_LOSSES:
        loss = _parser(task, base_loss=name).get_parsed_content("loss")
        ref = build_loss(name, ignore_index=ii)
        assert type(loss) is type(ref) and loss.ignore_index == ii, name
        torch.testing.assert_close(loss(x, y), ref(x, y), msg=name)
    wrapped = _parser(task, base_loss="mbls", regularizer="meep_kl", meep_lambda=0.2).get_parsed_content("loss")
    assert isinstance(wrapped, MEEPLoss) and isinstance(wrapped.loss, MbLSLoss) and wrapped.weight == 0.2
    edited = _parser(task, base_loss="mbls", **{"base_losses#mbls#margin": 5.0}).get_parsed_content("loss")
    assert edited.margin == 5.0
