"""MEEPLoss / ConfidencePenaltyLoss around MONAI and torch losses: exactness, signs, parts, ignore_index, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from meep_reference import reference
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss, GeneralizedDiceFocalLoss
from torch import nn

from monai_meep.enums import Regularizer
from monai_meep.losses import ConfidencePenaltyLoss, MEEPLoss

DOCS = Path(__file__).resolve().parents[2] / "docs" / "losses.md"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(c=3, spatial=(6, 5, 4), batch=2, seed=0, form="index"):
    g = _gen(seed)
    logits = torch.randn(batch, c, *spatial, generator=g) * 2
    labels = torch.randint(0, max(c, 2), (batch, 1, *spatial), generator=g)
    if form == "nochannel":
        return logits, labels[:, 0]
    if form == "onehot":
        return logits, nn.functional.one_hot(labels[:, 0], c).movedim(-1, 1).float()
    if form == "multilabel":
        return logits, (torch.rand(logits.shape, generator=g) < 0.4).float()
    if form == "binary":  # a one-channel float target for a sigmoid / BCE output
        return logits, (torch.rand(logits.shape, generator=g) < 0.4).float()
    return logits, labels


# (wrapped loss factory, channels, target form, activation it must read)
WRAPPED = {
    "dice_softmax": (lambda: DiceLoss(to_onehot_y=True, softmax=True), 3, "index", "softmax"),
    "dice_sigmoid_multilabel": (lambda: DiceLoss(sigmoid=True), 3, "multilabel", "sigmoid"),
    "dice_sigmoid_binary": (lambda: DiceLoss(sigmoid=True), 1, "binary", "sigmoid"),
    "focal_softmax": (lambda: FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0), 3, "index", "softmax"),
    "focal_sigmoid": (lambda: FocalLoss(gamma=2.0), 3, "onehot", "sigmoid"),
    "dicece": (lambda: DiceCELoss(to_onehot_y=True, softmax=True), 3, "index", "softmax"),
    "dicece_binary_sigmoid": (lambda: DiceCELoss(sigmoid=True), 1, "binary", "sigmoid"),
    "dicefocal": (lambda: DiceFocalLoss(to_onehot_y=True, softmax=True), 3, "index", "softmax"),
    "gdicefocal": (lambda: GeneralizedDiceFocalLoss(to_onehot_y=True, sigmoid=True), 3, "index", "sigmoid"),
    "torch_ce": (nn.CrossEntropyLoss, 3, "nochannel", "softmax"),
    "torch_bce": (nn.BCEWithLogitsLoss, 1, "binary", "sigmoid"),
}


def _make_target(name, c, form, seed):
    return _data(c=c, seed=seed, form=form)


@pytest.mark.parametrize("name", list(WRAPPED))
@pytest.mark.parametrize("regularizer", ["meep_kl", "meep_entropy"])
def test_weight_zero_is_the_wrapped_loss_exactly(name, regularizer):
    factory, c, form, activation = WRAPPED[name]
    logits, target = _make_target(name, c, form, seed=1)
    wrapped = MEEPLoss(factory(), regularizer=regularizer, weight=0.0)
    assert wrapped.activation == activation
    torch.manual_seed(0)
    expected = factory()(logits, target)
    assert torch.equal(wrapped(logits, target), expected)


@pytest.mark.parametrize("name", ["dice_softmax", "focal_sigmoid", "dicece", "torch_ce", "dice_sigmoid_binary"])
def test_signs_and_parts(name):
    """kl: seg + w * KL_W; entropy: seg - w * H_W; the parts are the float64 reference values, detached."""
    factory, c, form, activation = WRAPPED[name]
    logits, target = _make_target(name, c, form, seed=2)
    seg = factory()(logits, target)
    for regularizer, sign in (("meep_kl", 1.0), ("meep_entropy", -1.0)):
        loss = MEEPLoss(factory(), regularizer=regularizer, weight=0.7)
        z = logits.clone().requires_grad_()
        out = loss(z, target)
        value, fraction = reference(logits, target, activation, regularizer)
        assert out.item() == pytest.approx(seg.item() + sign * 0.7 * value, rel=1e-5, abs=1e-6)
        parts = loss.parts
        assert parts["seg_loss"].item() == pytest.approx(seg.item(), rel=1e-6)
        assert parts["regularizer"].item() == pytest.approx(value, rel=2e-6, abs=1e-6)
        assert parts["error_fraction"].item() == pytest.approx(fraction, rel=1e-6)
        assert 0 < fraction < 1 and value > 0
        assert not any(p.requires_grad for p in parts.values())
        out.backward()
        assert torch.isfinite(z.grad).all()


def test_activation_is_read_or_asked_for():
    assert MEEPLoss(DiceFocalLoss(sigmoid=True)).activation == "sigmoid"
    assert MEEPLoss(DiceFocalLoss()).activation == "sigmoid"  # dice has none; the focal part is a sigmoid focal
    assert MEEPLoss(FocalLoss()).activation == "sigmoid"
    assert MEEPLoss(DiceLoss(), activation="softmax").activation == "softmax"  # explicit wins
    assert MEEPLoss(DiceLoss(softmax=True), activation="sigmoid").activation == "sigmoid"
    assert MEEPLoss(DiceCELoss()).activation == "softmax"  # dice has none; the CE part is a softmax
    for unreadable in (DiceLoss(), DiceLoss(other_act=torch.tanh), lambda x, y: (x - y).abs().mean()):
        with pytest.raises(ValueError, match=r"activation='softmax'.*activation='sigmoid'"):
            MEEPLoss(unreadable)
    with pytest.raises(ValueError, match="activation='softmax'"):
        ConfidencePenaltyLoss(DiceFocalLoss(other_act=torch.tanh))


def test_ignore_index_reused_from_wrapped_loss():
    assert MEEPLoss(DiceLoss(to_onehot_y=True, softmax=True, ignore_index=2)).ignore_index == 2
    assert MEEPLoss(FocalLoss(to_onehot_y=True, use_softmax=True, ignore_index=3)).ignore_index == 3
    assert MEEPLoss(nn.CrossEntropyLoss(ignore_index=2)).ignore_index == 2
    assert MEEPLoss(nn.CrossEntropyLoss()).ignore_index is None  # torch's unset default -100 is not reused
    assert MEEPLoss(DiceCELoss(to_onehot_y=True, softmax=True)).ignore_index is None
    assert MEEPLoss(DiceLoss(softmax=True, ignore_index=2), ignore_index=1).ignore_index == 1  # explicit wins


@pytest.mark.parametrize("regularizer", ["meep_kl", "meep_entropy"])
def test_wmh_labels_with_monai_ignore_index(regularizer):
    """Labels 0 / 1 / 2, 2-channel softmax, DiceLoss(ignore_index=2) (MONAI 1.6): label-2 voxels are out of W and
    of the error fraction, and the whole loss sends them no gradient."""
    logits, _ = _data(c=2, spatial=(8, 8, 4), seed=3)
    target = torch.randint(0, 3, (2, 1, 8, 8, 4), generator=_gen(4))
    dice = DiceLoss(to_onehot_y=True, softmax=True, ignore_index=2)
    loss = MEEPLoss(dice, regularizer=regularizer, weight=1.0)
    z = logits.clone().requires_grad_()
    out = loss(z, target)
    value, fraction = reference(logits, target, "softmax", regularizer, ignore_index=2)
    assert loss.last_regularizer.item() == pytest.approx(value, rel=2e-6)
    assert loss.last_error_fraction.item() == pytest.approx(fraction, rel=1e-6)
    assert torch.equal(loss.last_seg_loss, dice(logits, target))
    out.backward()
    assert (z.grad[(target == 2).expand_as(z)] == 0).all()
    assert z.grad[(target != 2).expand_as(z)].abs().sum() > 0


def test_confidence_penalty():
    logits, target = _data(c=3, seed=5)
    dicece = DiceCELoss(to_onehot_y=True, softmax=True)
    loss = ConfidencePenaltyLoss(DiceCELoss(to_onehot_y=True, softmax=True))  # beta = 0.2 as in the paper
    entropy, _ = reference(logits, target, "softmax", "confidence_penalty")
    assert loss.weight == 0.2
    assert loss(logits, target).item() == pytest.approx(dicece(logits, target).item() - 0.2 * entropy, rel=1e-6)
    assert loss.parts["regularizer"].item() == pytest.approx(entropy, rel=2e-6)
    assert torch.equal(ConfidencePenaltyLoss(dicece, weight=0)(logits, target), dicece(logits, target))
    # WMH labels: the penalty reads no labels, so label 2 passes and every voxel is averaged
    wmh = torch.randint(0, 3, (2, 1, 6, 5, 4), generator=_gen(7))
    wmh_dice = DiceLoss(to_onehot_y=True, softmax=True, ignore_index=2)
    entropy_2, _ = reference(logits[:, :2], None, "softmax", "confidence_penalty")
    expected_2 = wmh_dice(logits[:, :2], wmh).item() - 0.2 * entropy_2
    assert ConfidencePenaltyLoss(wmh_dice)(logits[:, :2], wmh).item() == pytest.approx(expected_2, rel=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        ConfidencePenaltyLoss(wmh_dice)(logits[:, :2], wmh[..., :2])
    sig = ConfidencePenaltyLoss(nn.BCEWithLogitsLoss(), weight=0.5)
    binary = torch.randint(0, 2, (2, 1, 6, 5, 4), generator=_gen(6)).float()
    entropy_b, _ = reference(logits[:, :1], None, "sigmoid", "confidence_penalty")
    expected = nn.BCEWithLogitsLoss()(logits[:, :1], binary).item() - 0.5 * entropy_b
    assert sig(logits[:, :1], binary).item() == pytest.approx(expected, rel=1e-6)


def test_bad_arguments_and_inputs():
    dice = DiceLoss(to_onehot_y=True, softmax=True)
    with pytest.raises(ValueError, match="regularizer.*'kld'"):
        MEEPLoss(dice, regularizer="kld")
    with pytest.raises(ValueError, match="weight.*-0.1"):
        MEEPLoss(dice, weight=-0.1)
    with pytest.raises(ValueError, match="weight"):
        MEEPLoss(dice, weight=float("nan"))
    with pytest.raises(ValueError, match="weight"):
        ConfidencePenaltyLoss(dice, weight=-1)
    with pytest.raises(TypeError, match="callable"):
        MEEPLoss("dice", activation="softmax")
    with pytest.raises(ValueError, match="regularizer.*'kl'"):
        MEEPLoss(dice, regularizer="kl")  # the pre-0.x-rename spelling: one name, no alias (docs/losses.md)
    with pytest.raises(ValueError, match="regularizer.*'none'"):
        MEEPLoss(dice, regularizer="none")  # a Regularizer, but not one MEEPLoss applies
    with pytest.raises(TypeError, match="regularizer must be a str"):
        MEEPLoss(dice, regularizer=2)
    assert MEEPLoss(dice, regularizer=Regularizer.MEEP_ENTROPY).regularizer == "meep_entropy"
    logits, target = _data(c=3, seed=7)
    loss = MEEPLoss(dice)
    with pytest.raises(ValueError, match=r"\(2, 1, 6, 5\).*\(2, 3, 6, 5, 4\)"):
        loss(logits, target[..., 0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        loss(logits, target + 1)
    with pytest.raises(ValueError, match="softmax needs C >= 2"):
        MEEPLoss(DiceLoss(to_onehot_y=True), activation="softmax")(logits[:, :1], target.clamp(max=1))
    bad = logits.clone()
    bad[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        loss(bad, target)
    with pytest.raises(ValueError, match=r"target\[:, 0\]"):  # torch CE takes (B, *spatial)
        MEEPLoss(nn.CrossEntropyLoss())(logits, target)


def test_amp_bf16_logits():
    logits, target = _data(c=3, seed=8)
    loss = MEEPLoss(DiceCELoss(to_onehot_y=True, softmax=True), regularizer="meep_kl", weight=0.5)
    half = logits.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(half, target)
    out.backward()
    assert loss.last_regularizer.dtype == torch.float32
    value, _ = reference(half, target, "softmax", "meep_kl")
    assert loss.last_regularizer.item() == pytest.approx(value, rel=2e-6)
    assert half.grad.dtype == torch.bfloat16 and torch.isfinite(half.grad.float()).all()


def _docs_block(lang: str) -> str:
    text = DOCS.read_text()
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)
    assert blocks, f"no ```{lang} block in {DOCS}"
    return blocks


def test_docs_python_examples_run():
    for block in _docs_block("python"):
        exec(compile(block, str(DOCS), "exec"), {})


def test_docs_bundle_config_instantiates():
    from monai.bundle import ConfigParser

    config = json.loads(_docs_block("json")[0])
    parser = ConfigParser(config)
    loss = parser.get_parsed_content("loss")
    assert isinstance(loss, MEEPLoss) and loss.regularizer == "meep_kl" and loss.ignore_index == 2
    logits, target = _data(c=2, seed=9)
    loss(logits, torch.randint(0, 3, target.shape, generator=_gen(10)))
    transform = parser.get_parsed_content("loss_parts")
    for output in ([{"loss": torch.tensor(1.0)}], {"loss": torch.tensor(1.0)}):  # decollated or not
        logged = transform(output)
        assert set(logged) == {"loss", "seg_loss", "regularizer", "error_fraction"}
        assert logged["regularizer"] is loss.last_regularizer
