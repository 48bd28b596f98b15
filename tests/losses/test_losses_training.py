"""A small MONAI 3D UNet trains with every wrapper on CPU: finite parts, and the loss goes down."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss
from monai.networks.nets import UNet
from torch import nn

from monai_meep.losses import ConfidencePenaltyLoss, MEEPLoss


def _batch(out_channels: int):
    """Two 16^3 volumes: a noisy bright ball on a dark background, label = the ball."""
    g = torch.Generator().manual_seed(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"))
    images, labels = [], []
    for centre, radius in (((7.0, 8.0, 8.0), 4.5), ((9.0, 7.0, 8.0), 3.5)):
        dist = ((grid - torch.tensor(centre).view(3, 1, 1, 1)) ** 2).sum(0).sqrt()
        label = (dist < radius).long()
        images.append(label.float() + 0.6 * torch.randn(16, 16, 16, generator=g))
        labels.append(label)
    image, label = torch.stack(images)[:, None], torch.stack(labels)[:, None]
    return image, label


SETUPS = {
    "meep_kl_dice_softmax": (lambda: MEEPLoss(DiceLoss(to_onehot_y=True, softmax=True), "meep_kl", 1.0), 2, "index"),
    "meep_entropy_dicece": (
        lambda: MEEPLoss(DiceCELoss(to_onehot_y=True, softmax=True), "meep_entropy", 0.3),
        2,
        "index",
    ),
    "meep_kl_focal_sigmoid": (lambda: MEEPLoss(FocalLoss(gamma=2.0), "meep_kl", 0.5), 1, "float"),
    "meep_entropy_dicefocal": (
        lambda: MEEPLoss(DiceFocalLoss(to_onehot_y=True, softmax=True), "meep_entropy", 0.5),
        2,
        "index",
    ),
    "meep_kl_torch_ce": (lambda: MEEPLoss(nn.CrossEntropyLoss(), "meep_kl", 0.1), 2, "nochannel"),
    "confidence_penalty_dice": (lambda: ConfidencePenaltyLoss(DiceLoss(to_onehot_y=True, softmax=True)), 2, "index"),
}


@pytest.mark.parametrize("name", list(SETUPS))
def test_unet_trains_with_wrapper(name):
    factory, out_channels, form = SETUPS[name]
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=out_channels, channels=(4, 8, 16), strides=(2, 2))
    loss_fn = factory()
    image, label = _batch(out_channels)
    target = {"index": label, "float": label.float(), "nochannel": label[:, 0]}[form]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    history = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = loss_fn(net(image), target)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        assert all(torch.isfinite(v) for v in loss_fn.parts.values())
    assert history[-1] < history[0], history
