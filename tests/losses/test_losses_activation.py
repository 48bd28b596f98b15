"""The activation MEEPLoss reads from MONAI's segmentation losses (monai_meep.losses.activation): for each loss, built
with its defaults and common flags, the inferred activation, and MEEPLoss(loss, weight=0) equal to the bare loss."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from monai import losses as L
from torch import nn

from monai_meep.losses import ConfidencePenaltyLoss, MEEPLoss, infer_activation

SPATIAL = (6, 5, 4)


def _inputs(c: int, form: str, seed: int, spatial=SPATIAL):
    """Small random logits ``(2, c, *spatial)`` and a target: ``index`` ``(B, 1, *)``, ``nochannel`` ``(B, *)``,
    ``onehot`` ``(B, c, *)`` (exclusive classes; for ``c == 1`` a binary map), ``multilabel`` ``(B, c, *)``."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, c, *spatial, generator=g) * 2
    labels = torch.randint(0, max(c, 2), (2, 1, *spatial), generator=g)
    if form == "index":
        return logits, labels
    if form == "nochannel":
        return logits, labels[:, 0]
    if form == "onehot":
        onehot = labels.float() if c == 1 else nn.functional.one_hot(labels[:, 0], c).movedim(-1, 1).float()
        return logits, onehot
    return logits, (torch.rand(logits.shape, generator=g) < 0.4).float()  # multilabel


# name -> (factory, channels, target forms the loss accepts, the activation MEEPLoss must read, spatial)
DECLARED = {
    # flags on the loss itself
    "DiceLoss(to_onehot_y, softmax)": (lambda: L.DiceLoss(to_onehot_y=True, softmax=True), 3, ("index",), "softmax"),
    "DiceLoss(softmax)": (lambda: L.DiceLoss(softmax=True), 3, ("onehot",), "softmax"),
    "DiceLoss(sigmoid) binary": (lambda: L.DiceLoss(sigmoid=True), 1, ("index", "onehot"), "sigmoid"),
    "DiceLoss(sigmoid) multilabel": (lambda: L.DiceLoss(sigmoid=True), 3, ("multilabel",), "sigmoid"),
    "GeneralizedDiceLoss(to_onehot_y, softmax)": (
        lambda: L.GeneralizedDiceLoss(to_onehot_y=True, softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "GeneralizedDiceLoss(sigmoid)": (lambda: L.GeneralizedDiceLoss(sigmoid=True), 3, ("multilabel",), "sigmoid"),
    "TverskyLoss(to_onehot_y, softmax)": (
        lambda: L.TverskyLoss(to_onehot_y=True, softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "TverskyLoss(sigmoid)": (lambda: L.TverskyLoss(sigmoid=True), 1, ("index", "onehot"), "sigmoid"),
    "MCCLoss(to_onehot_y, softmax)": (lambda: L.MCCLoss(to_onehot_y=True, softmax=True), 3, ("index",), "softmax"),
    "MCCLoss(sigmoid)": (lambda: L.MCCLoss(sigmoid=True), 1, ("onehot",), "sigmoid"),
    "HausdorffDTLoss(to_onehot_y, softmax)": (
        lambda: L.HausdorffDTLoss(to_onehot_y=True, softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "LogHausdorffDTLoss(sigmoid)": (lambda: L.LogHausdorffDTLoss(sigmoid=True), 1, ("onehot",), "sigmoid"),
    "BoundaryLoss(softmax)": (lambda: L.BoundaryLoss(softmax=True), 3, ("onehot",), "softmax"),
    "SoftclDiceLoss(softmax)": (lambda: L.SoftclDiceLoss(softmax=True), 3, ("onehot",), "softmax"),
    "SoftDiceclDiceLoss(sigmoid)": (lambda: L.SoftDiceclDiceLoss(sigmoid=True), 1, ("onehot",), "sigmoid"),
    "FocalLoss()": (lambda: L.FocalLoss(), 3, ("onehot",), "sigmoid"),  # use_softmax=False: a sigmoid focal
    "FocalLoss(to_onehot_y, use_softmax)": (
        lambda: L.FocalLoss(to_onehot_y=True, use_softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "FocalLoss(use_softmax)": (lambda: L.FocalLoss(use_softmax=True), 3, ("onehot",), "softmax"),
    # MaskedDiceLoss applies its activation before masking: pre_sigmoid / pre_softmax
    "MaskedDiceLoss(sigmoid)": (lambda: L.MaskedDiceLoss(sigmoid=True), 1, ("index", "onehot"), "sigmoid"),
    "MaskedDiceLoss(to_onehot_y, softmax)": (
        lambda: L.MaskedDiceLoss(to_onehot_y=True, softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "MaskedDiceLoss(other_act=torch.sigmoid)": (
        lambda: L.MaskedDiceLoss(other_act=torch.sigmoid),
        3,
        ("multilabel",),
        "sigmoid",
    ),
    # other_act a known softmax over channels / sigmoid
    "DiceLoss(other_act=nn.Softmax(dim=1))": (
        lambda: L.DiceLoss(to_onehot_y=True, other_act=nn.Softmax(dim=1)),
        3,
        ("index",),
        "softmax",
    ),
    "DiceLoss(other_act=partial(torch.softmax, dim=1))": (
        lambda: L.DiceLoss(other_act=functools.partial(torch.softmax, dim=1)),
        3,
        ("onehot",),
        "softmax",
    ),
    "DiceLoss(other_act=partial(F.softmax, dim=1))": (
        lambda: L.DiceLoss(to_onehot_y=True, other_act=functools.partial(nn.functional.softmax, dim=1)),
        3,
        ("index",),
        "softmax",
    ),
    "DiceLoss(other_act=torch.sigmoid)": (lambda: L.DiceLoss(other_act=torch.sigmoid), 3, ("multilabel",), "sigmoid"),
    "TverskyLoss(other_act=nn.Sigmoid())": (
        lambda: L.TverskyLoss(other_act=nn.Sigmoid()),
        1,
        ("index", "onehot"),
        "sigmoid",
    ),
    "DiceFocalLoss(other_act=partial(torch.softmax, dim=1))": (
        lambda: L.DiceFocalLoss(to_onehot_y=True, other_act=functools.partial(torch.softmax, dim=1)),
        3,
        ("index",),
        "softmax",
    ),
    # compound losses: the inner losses
    "DiceCELoss()": (lambda: L.DiceCELoss(), 3, ("onehot",), "softmax"),  # the CE part is a softmax
    "DiceCELoss(to_onehot_y)": (lambda: L.DiceCELoss(to_onehot_y=True), 3, ("index",), "softmax"),
    "DiceCELoss(to_onehot_y, softmax)": (
        lambda: L.DiceCELoss(to_onehot_y=True, softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "DiceCELoss(sigmoid) binary": (lambda: L.DiceCELoss(sigmoid=True), 1, ("onehot",), "sigmoid"),
    "DiceFocalLoss()": (lambda: L.DiceFocalLoss(), 3, ("onehot",), "sigmoid"),  # the focal part is a sigmoid focal
    "DiceFocalLoss(to_onehot_y, softmax)": (
        lambda: L.DiceFocalLoss(to_onehot_y=True, softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "DiceFocalLoss(sigmoid)": (lambda: L.DiceFocalLoss(sigmoid=True), 3, ("multilabel",), "sigmoid"),
    "GeneralizedDiceFocalLoss()": (lambda: L.GeneralizedDiceFocalLoss(), 3, ("onehot",), "sigmoid"),
    "GeneralizedDiceFocalLoss(to_onehot_y, softmax)": (
        lambda: L.GeneralizedDiceFocalLoss(to_onehot_y=True, softmax=True),
        3,
        ("index",),
        "softmax",
    ),
    "GeneralizedDiceFocalLoss(sigmoid)": (lambda: L.GeneralizedDiceFocalLoss(sigmoid=True), 1, ("onehot",), "sigmoid"),
    "NACLLoss(classes=3, dim=2)": (lambda: L.NACLLoss(classes=3, dim=2), 3, ("nochannel",), "softmax", (6, 5)),
    "NACLLoss(classes=3, dim=3)": (lambda: L.NACLLoss(classes=3, dim=3), 3, ("nochannel",), "softmax"),
    # class-level knowledge: forwards that always apply a softmax
    "GeneralizedWassersteinDiceLoss": (
        lambda: L.GeneralizedWassersteinDiceLoss(dist_matrix=np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [1, 0.5, 0]])),
        3,
        ("index", "nochannel"),
        "softmax",
    ),
    "torch CrossEntropyLoss": (nn.CrossEntropyLoss, 3, ("nochannel",), "softmax"),
    "torch CrossEntropyLoss (probabilities target)": (nn.CrossEntropyLoss, 3, ("onehot",), "softmax"),
    "torch BCEWithLogitsLoss": (nn.BCEWithLogitsLoss, 3, ("multilabel",), "sigmoid"),
    # wrappers: the wrapped loss
    "DeepSupervisionLoss(DiceCELoss(to_onehot_y))": (
        lambda: L.DeepSupervisionLoss(L.DiceCELoss(to_onehot_y=True)),
        3,
        ("index",),
        "softmax",
    ),
    "MaskedLoss(DiceLoss, sigmoid)": (lambda: L.MaskedLoss(L.DiceLoss, sigmoid=True), 1, ("onehot",), "sigmoid"),
}

CASES = [
    pytest.param(name, form, id=f"{name}-{form}") for name, (_, _, forms, *_) in DECLARED.items() for form in forms
]


def _spatial(name):
    entry = DECLARED[name]
    return entry[4] if len(entry) > 4 else SPATIAL


@pytest.mark.parametrize("name", list(DECLARED))
def test_inferred_activation(name):
    factory, _, _, activation, *_ = DECLARED[name]
    assert infer_activation(factory()) == activation
    assert MEEPLoss(factory()).activation == activation
    assert ConfidencePenaltyLoss(factory()).activation == activation


@pytest.mark.parametrize(("name", "form"), CASES)
@pytest.mark.parametrize("regularizer", ["meep_kl", "meep_entropy"])
def test_weight_zero_equals_the_bare_loss(name, form, regularizer):
    factory, c, _, _, *_ = DECLARED[name]
    logits, target = _inputs(c, form, seed=len(name), spatial=_spatial(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. MONAI's "single channel prediction, `to_onehot_y=True` ignored."
        expected = factory()(logits, target)
        wrapped = MEEPLoss(factory(), regularizer=regularizer, weight=0.0)
        value = wrapped(logits, target)
    assert torch.isfinite(expected).all()
    assert torch.equal(value, expected)
    assert torch.isfinite(wrapped.last_regularizer)  # the regulariser ran on the same logits


def test_explicit_activation_wins():
    assert infer_activation(L.DiceLoss(softmax=True), "sigmoid") == "sigmoid"
    assert infer_activation(L.DiceLoss(), "softmax") == "softmax"
    assert MEEPLoss(L.DiceCELoss(), activation="sigmoid").activation == "sigmoid"
    with pytest.raises(ValueError, match="activation: Unsupported option 'tanh'"):
        infer_activation(L.DiceLoss(softmax=True), "tanh")
    with pytest.raises(TypeError, match="activation must be a str"):
        infer_activation(L.DiceLoss(softmax=True), 1)


def test_a_meep_loss_wrapped_again_keeps_its_activation():
    inner = MEEPLoss(L.DiceLoss(), activation="sigmoid")
    assert infer_activation(inner) == "sigmoid"
    assert infer_activation(ConfidencePenaltyLoss(L.DiceCELoss(to_onehot_y=True))) == "softmax"


REFUSED = {
    # nothing declared: MONAI's losses without softmax / sigmoid / other_act expect probabilities
    "DiceLoss()": (lambda: L.DiceLoss(), "declares none"),
    "GeneralizedDiceLoss()": (lambda: L.GeneralizedDiceLoss(), "declares none"),
    "TverskyLoss()": (lambda: L.TverskyLoss(), "declares none"),
    "MCCLoss()": (lambda: L.MCCLoss(), "declares none"),
    "HausdorffDTLoss()": (lambda: L.HausdorffDTLoss(), "declares none"),
    "SoftclDiceLoss()": (lambda: L.SoftclDiceLoss(), "declares none"),
    "MaskedDiceLoss()": (lambda: L.MaskedDiceLoss(), "declares none"),
    # its forward clamps the input to [eps, 1 - eps] (probabilities) although its docstring mentions a sigmoid
    "AsymmetricUnifiedFocalLoss()": (lambda: L.AsymmetricUnifiedFocalLoss(), "declares none"),
    "a function": (lambda: lambda x, y: (x - y).abs().mean(), "declares none"),
    # other_act that is neither a sigmoid nor a softmax over channels
    "DiceLoss(other_act=torch.tanh)": (lambda: L.DiceLoss(other_act=torch.tanh), "other_act="),
    "DiceLoss(other_act=nn.Softmax())": (lambda: L.DiceLoss(other_act=nn.Softmax()), "other_act=Softmax"),
    "DiceLoss(other_act=partial(torch.softmax, dim=0))": (
        lambda: L.DiceLoss(other_act=functools.partial(torch.softmax, dim=0)),
        "other_act=",
    ),
    "DiceLoss(other_act=lambda)": (lambda: L.DiceLoss(other_act=lambda x: x.softmax(1)), "other_act="),
    "MaskedDiceLoss(other_act=torch.relu)": (lambda: L.MaskedDiceLoss(other_act=torch.relu), "pre_other_act="),
    # an unknown activation on an inner loss refuses the whole loss, whatever the other parts say
    "DiceFocalLoss(other_act=torch.tanh)": (
        lambda: L.DiceFocalLoss(other_act=torch.tanh),
        "DiceLoss applies other_act",
    ),
    "DiceCELoss(other_act=torch.tanh)": (lambda: L.DiceCELoss(other_act=torch.tanh), "DiceLoss applies other_act"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_the_way_out(name):
    factory, why = REFUSED[name]
    loss = factory()
    for wrapper in (MEEPLoss, ConfidencePenaltyLoss, infer_activation):
        with pytest.raises(ValueError, match=r"activation='softmax'.*activation='sigmoid'") as info:
            wrapper(loss)
        message = str(info.value)
        assert f"cannot tell which activation {type(loss).__name__} applies" in message
        assert why in message
    assert MEEPLoss(loss, activation="sigmoid").activation == "sigmoid"  # the way out
