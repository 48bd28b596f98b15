"""build_loss: names, paper lambdas, and agreement with the wrapped MONAI losses."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss, FocalLoss

from monai_meep.apps.loss_factory import PAPER_LAMBDA, build_loss, paper_lambda
from monai_meep.losses import ConfidencePenaltyLoss, MEEPLoss, mean_entropy, meep_kl


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 2, 6, 6, 6, generator=g), torch.randint(0, 2, (2, 1, 6, 6, 6), generator=g)


def test_paper_lambdas():
    assert paper_lambda("wmh", "ce") == 0.3 and paper_lambda("wmh", "dice") == 1.0
    assert paper_lambda("la", "ce") == 0.1 and paper_lambda("la", "dice") == 0.5
    assert paper_lambda("la", "dice", "confidence_penalty") == 0.2
    for (task, base), lam in PAPER_LAMBDA.items():
        loss = build_loss(base, "meep_kl", task=task)
        assert isinstance(loss, MEEPLoss) and loss.weight == lam and loss.regularizer == "meep_kl"


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="dice, ce, focal"):
        build_loss("dicee")
    with pytest.raises(ValueError, match="none, meep_entropy, meep_kl, confidence_penalty"):
        build_loss("dice", "kl")
    with pytest.raises(ValueError, match="task"):
        build_loss("dice", "meep_kl")  # paper lambda needs the task
    with pytest.raises(ValueError, match=">= 0"):
        build_loss("dice", "meep_kl", weight=-1.0)


def test_base_losses_match_monai_and_torch(batch):
    x, y = batch
    ref_dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)(x, y)
    torch.testing.assert_close(build_loss("dice")(x, y), ref_dice)
    torch.testing.assert_close(build_loss("ce")(x, y), torch.nn.functional.cross_entropy(x, y[:, 0]))
    torch.testing.assert_close(
        build_loss("focal")(x, y), FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0)(x, y)
    )


def test_meep_kl_is_base_plus_lambda_kl(batch):
    x, y = batch
    loss = build_loss("ce", "meep_kl", task="wmh")
    expected = torch.nn.functional.cross_entropy(x, y[:, 0]) + 0.3 * meep_kl(x, y, activation="softmax")
    torch.testing.assert_close(loss(x, y), expected)


def test_confidence_penalty(batch):
    x, y = batch
    loss = build_loss("dice", "confidence_penalty")
    assert isinstance(loss, ConfidencePenaltyLoss)
    expected = build_loss("dice")(x, y) - 0.2 * mean_entropy(x, activation="softmax")
    torch.testing.assert_close(loss(x, y), expected)


def test_ignore_index_leaves_label_2_out_of_ce(batch):
    x, y = batch
    y2 = y.clone()
    y2[:, :, :2] = 2
    keep = y2[:, 0] != 2
    ref = torch.nn.functional.cross_entropy(x.permute(0, 2, 3, 4, 1)[keep], y2[:, 0][keep])
    torch.testing.assert_close(build_loss("ce", ignore_index=2)(x, y2), ref)
    for reg in ("none", "meep_entropy", "meep_kl", "confidence_penalty"):
        out = build_loss("dice", reg, task="wmh", ignore_index=2)(x.requires_grad_(), y2)
        assert torch.isfinite(out)
