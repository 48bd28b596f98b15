# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The field's calibration conventions (issue 16): each preset against its library's definition, macro vs micro,
with / without background, the boundary band against a scipy construction, and properties.

References: MONAI 1.6's ``CalibrationErrorMetric`` itself for ``"monai"``; float64 NumPy re-implementations written
here for ``"meep"`` (the paper: class-wise foreground probability, all voxels, 15 bins, per volume) and ``"mbls"``
(``Bala93/MarginLoss``'s evaluators: voxels with a non-zero label, Guo et al.'s top-label ``ECELoss`` with 15 bins
``(lower, upper]``, per image then mean).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor
from monai.metrics import CalibrationErrorMetric
from scipy.ndimage import distance_transform_edt, gaussian_filter

from monai_meep.metrics import (
    CalibrationConvention,
    ExpectedCalibrationErrorMetric,
    Region,
    batch_region_mask,
    calibration_convention,
    calibration_errors,
)

SHAPE = (12, 10, 8)


def _data(b=3, c=3, seed=0):
    """Smooth random label maps (every class present) and softmax probabilities loosely tied to them, float64."""
    rng = np.random.default_rng(seed)
    fields = gaussian_filter(rng.normal(size=(b, c, *SHAPE)), sigma=(0, 0, 2, 2, 2))
    fields[:, 0] += 0.05  # a little more background
    labels = fields.argmax(1)
    logits = 2.0 * rng.normal(size=(b, c, *SHAPE)) + 3.0 * (labels[:, None] == np.arange(c)[None, :, None, None, None])
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return probs, labels


def _ece(conf, hit, num_bins, right_closed=False):
    """Textbook l1 ECE, float64: bins ``[k/K, (k+1)/K)`` (last closed), or ``(k/K, (k+1)/K]`` (Guo's code)."""
    conf, hit = np.asarray(conf, np.float64).ravel(), np.asarray(hit, np.float64).ravel()
    if conf.size == 0:
        return np.nan
    if right_closed:
        idx = np.clip(np.ceil(conf * num_bins).astype(int) - 1, 0, num_bins - 1)
    else:
        idx = np.clip(np.floor(conf * num_bins).astype(int), 0, num_bins - 1)
    total = 0.0
    for k in range(num_bins):
        sel = idx == k
        if sel.any():
            total += sel.sum() * abs(conf[sel].mean() - hit[sel].mean())
    return total / conf.size


def _meep_reference(probs, labels):
    """The MEEP paper's ECE per volume for every foreground class: ``p_c`` vs ``y == c``, all voxels, 15 bins."""
    c = probs.shape[1]
    per_image = np.array([[_ece(p[k], y == k, 15) for k in range(1, c)] for p, y in zip(probs, labels, strict=True)])
    pooled = np.array([_ece(probs[:, k], labels == k, 15) for k in range(1, c)])
    return per_image, pooled


def _mbls_reference(probs, labels):
    """``Bala93/MarginLoss``: drop voxels labelled 0, then ``ECELoss(n_bins=15)`` (top-label, bins ``(lo, hi]``)."""

    def one(p, y):
        sel = y != 0
        conf, pred = p.max(0)[sel], p.argmax(0)[sel]
        return _ece(conf, pred == y[sel], 15, right_closed=True)

    per_image = np.array([one(p, y) for p, y in zip(probs, labels, strict=True)])
    pooled = one(probs.transpose(1, 0, 2, 3, 4).reshape(probs.shape[1], -1), labels.reshape(-1))
    return per_image, pooled


def _onehot(labels, c):
    return (labels[:, None] == np.arange(c)[None, :, None, None, None]).astype(np.float64)


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


# ---------------------------------------------------------------- presets against each library's definition
def test_preset_meep_equals_float64_reference():
    probs, labels = _data()
    errs = calibration_errors(_t(probs), _t(labels[:, None]), "meep")
    per_image, pooled = _meep_reference(probs, labels)
    assert errs.classes == [1, 2]
    np.testing.assert_allclose(errs.per_image.numpy(), per_image, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(errs.pooled.numpy(), pooled, rtol=1e-10, atol=1e-13)
    assert float(errs.macro) == pytest.approx(per_image.mean(), rel=1e-10)  # CECE per volume, then mean
    assert float(errs.micro) == pytest.approx(pooled.mean(), rel=1e-10)
    assert errs.convention == calibration_convention("meep")


def test_preset_mbls_equals_marginloss_definition():
    probs, labels = _data(seed=1)
    errs = calibration_errors(_t(probs), _t(labels[:, None]), "mbls")
    per_image, pooled = _mbls_reference(probs, labels)
    assert errs.classes is None and errs.per_image.shape == (3, 1)
    np.testing.assert_allclose(errs.per_image[:, 0].numpy(), per_image, rtol=1e-10, atol=1e-13)
    assert float(errs.pooled[0]) == pytest.approx(pooled, rel=1e-10)
    assert float(errs.macro) == pytest.approx(per_image.mean(), rel=1e-10)  # CalibSegmentEvaluator: plain mean


@pytest.mark.parametrize("norm, reduction", [("l1", "expected"), ("average", "average"), ("max", "maximum")])
def test_preset_monai_equals_calibration_error_metric(norm, reduction):
    """MONAI's defaults (20 bins, background in, right=False), per (image, class); float32 inside MONAI."""
    probs, labels = _data(seed=2)
    errs = calibration_errors(_t(probs), _t(labels[:, None]), "monai", norm=norm)
    y = _t(_onehot(labels, 3))
    per_image = CalibrationErrorMetric(calibration_reduction=reduction, metric_reduction="none")(_t(probs), y)
    mean = CalibrationErrorMetric(calibration_reduction=reduction)(_t(probs), y)
    assert errs.classes == [0, 1, 2]
    np.testing.assert_allclose(errs.per_image.numpy(), per_image.double().numpy(), atol=1e-6)
    assert float(errs.macro) == pytest.approx(float(mean.mean()), abs=1e-6)
    # micro: the dataset-pooled per-class value (cai4cai's "pooled"), = MONAI on all images as one long image
    flat_p = _t(probs.transpose(1, 0, 2, 3, 4).reshape(1, 3, -1))
    flat_y = _t(_onehot(labels, 3).transpose(1, 0, 2, 3, 4).reshape(1, 3, -1))
    pooled = CalibrationErrorMetric(calibration_reduction=reduction, metric_reduction="none")(flat_p, flat_y)
    np.testing.assert_allclose(errs.pooled.numpy(), pooled[0].double().numpy(), atol=1e-6)


def test_streaming_metric_equals_one_call():
    """``ExpectedCalibrationErrorMetric.from_convention`` over two batches = ``calibration_errors`` on all."""
    probs, labels = _data(b=4, seed=3)
    spacing = (1.5, 1.0, 2.0)
    errs = calibration_errors(_t(probs), _t(labels[:, None]), "mbls", region="boundary", spacing=spacing)
    metric = ExpectedCalibrationErrorMetric.from_convention("mbls", region="boundary", reduction="none")
    for sl in (slice(0, 1), slice(1, 4)):
        metric(_t(probs[sl]), _t(labels[sl, None]), spacing=spacing)
    torch.testing.assert_close(metric.aggregate(), errs.per_image)
    torch.testing.assert_close(metric.aggregate(pooled=True)[0], errs.pooled)
    # decollated lists with one spacing row per image, and a MetaTensor carrying its affine
    lists = ExpectedCalibrationErrorMetric.from_convention("mbls", region="boundary", reduction="none")
    out = lists(list(_t(probs)), list(_t(labels[:, None])), spacing=[spacing] * 4)
    torch.testing.assert_close(out, errs.per_image)
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    meta = MetaTensor(_t(labels[:, None]), affine=affine)
    via_meta = calibration_errors(_t(probs), meta, "mbls", region="boundary")
    torch.testing.assert_close(via_meta.per_image, errs.per_image)


# ---------------------------------------------------------------- closed-form cases
def test_macro_and_micro_differ_closed_form():
    """Two images, p_fg = 0.9 everywhere; image 1 all foreground, image 2 all background: per-image ECEs 0.1 and 0.9
    (macro 0.5); pooled, one bin with confidence 0.9 and frequency 0.5 (micro 0.4)."""
    probs = torch.full((2, 1, 2, 2, 1), 0.9, dtype=torch.float64)
    target = torch.stack([torch.ones(1, 2, 2, 1), torch.zeros(1, 2, 2, 1)]).long()
    errs = calibration_errors(probs, target, "meep")
    np.testing.assert_allclose(errs.per_image.numpy(), [[0.1], [0.9]], atol=1e-12)
    assert float(errs.macro) == pytest.approx(0.5, abs=1e-12)
    assert float(errs.micro) == pytest.approx(0.4, abs=1e-12)
    # MONAI's per-image mean is the macro value: a dataset-level number needs micro
    onehot = torch.cat([1 - target, target], 1).double()
    monai = CalibrationErrorMetric(num_bins=15, include_background=False)(torch.cat([1 - probs, probs], 1), onehot)
    assert float(monai.mean()) == pytest.approx(0.5, abs=1e-6)


def _two_voxels():
    """Two background voxels, p = (0.625, 0.375, 0) and (0.625, 0, 0.375), 10 bins."""
    probs = torch.tensor([[0.625, 0.375, 0.0], [0.625, 0.0, 0.375]], dtype=torch.float64).T.reshape(1, 3, 2, 1, 1)
    return probs, torch.zeros(1, 1, 2, 1, 1, dtype=torch.long)


def test_with_and_without_background_closed_form():
    """Class 0: both voxels in bin 6, frequency 1: ECE 0.375. Classes 1, 2: one voxel at 0.375 (gap 0.375), one at 0
    (gap 0): ECE 0.1875. CECE without background 0.1875, with it (0.375 + 2 * 0.1875) / 3 = 0.25."""
    probs, target = _two_voxels()
    without = calibration_errors(probs, target, "meep", num_bins=10)
    with_bg = calibration_errors(probs, target, "meep", num_bins=10, include_background=True)
    assert without.classes == [1, 2] and with_bg.classes == [0, 1, 2]
    np.testing.assert_allclose(without.per_image.numpy(), [[0.1875, 0.1875]])
    np.testing.assert_allclose(with_bg.per_image.numpy(), [[0.375, 0.1875, 0.1875]])
    assert float(without.macro) == pytest.approx(0.1875) and float(with_bg.macro) == pytest.approx(0.25)
    assert with_bg.convention.name == "meep+num_bins=10+include_background=True"
    # "monai" is the same class-wise ECE with the background, at its 20 bins (no voxel near an edge here)
    assert float(calibration_errors(probs, target, "monai").macro) == pytest.approx(0.25)
    # top-label: confidence 0.625 twice, both correct: 0.375
    top = calibration_errors(probs, target, "meep", num_bins=10, mode="top_label")
    assert top.classes is None and float(top.macro) == pytest.approx(0.375)
    # "mbls" scores the ground-truth foreground only: nothing here, NaN with a warning
    with pytest.warns(UserWarning, match="NaN"):
        assert np.isnan(float(calibration_errors(probs, target, "mbls").macro))


# ---------------------------------------------------------------- regions
def _band_edt(labels, spacing, width):
    """The boundary band from scipy's EDT: for each foreground class, its voxels within ``width`` mm of a voxel of
    another label, and the others' voxels within ``width`` mm of one of its voxels (voxel centres, mm)."""
    out = np.zeros(labels.shape, bool)
    for c in range(1, int(labels.max()) + 1):
        inside = labels == c
        if not inside.any() or inside.all():
            continue
        out |= inside & (distance_transform_edt(inside, sampling=spacing) <= width)
        out |= ~inside & (distance_transform_edt(~inside, sampling=spacing) <= width)
    return out


def test_boundary_band_equals_edt_with_anisotropic_spacing():
    probs, labels = _data(b=2, seed=4)
    spacings = [(0.7, 1.0, 2.5), (2.0, 0.5, 1.25)]  # one row per image
    mask = batch_region_mask(_t(labels[:, None]), "boundary", spacing=spacings, band_mm=1.6, num_classes=3)
    for i, s in enumerate(spacings):
        ref = _band_edt(labels[i], s, 1.6)
        assert ref.any() and not ref.all()
        np.testing.assert_array_equal(mask[i, 0].numpy(), ref)
    assert not np.array_equal(mask[0, 0].numpy(), mask[1, 0].numpy())  # the spacing matters
    errs = calibration_errors(_t(probs), _t(labels[:, None]), "meep", region="boundary", band_mm=1.6,
                              spacing=spacings)  # fmt: skip
    for i, s in enumerate(spacings):
        band = _band_edt(labels[i], s, 1.6)
        ref = [_ece(probs[i, k][band], (labels[i] == k)[band], 15) for k in (1, 2)]
        np.testing.assert_allclose(errs.per_image[i].numpy(), ref, rtol=1e-10)
    # one-hot targets give the same band; foreground is the non-zero labels
    onehot = batch_region_mask(_t(_onehot(labels, 3)), "boundary", spacing=spacings, band_mm=1.6)
    torch.testing.assert_close(onehot, mask)
    np.testing.assert_array_equal(batch_region_mask(_t(labels[:, None]), "foreground")[:, 0].numpy(), labels > 0)
    assert batch_region_mask(_t(labels[:, None]), "all") is None


def test_region_combines_with_mask_and_ignore_index():
    probs, labels = _data(b=2, c=2, seed=5)
    lab = labels.copy()
    lab[:, :2] = 2  # WMH-style "other pathology", not scored
    extra = np.random.default_rng(0).random(lab.shape) > 0.3
    errs = calibration_errors(_t(probs), _t(lab[:, None]), "mbls", ignore_index=2, mask=_t(extra[:, None]))
    for i in range(2):
        sel = (lab[i] == 1) & extra[i]
        ref = _ece(probs[i].max(0)[sel], probs[i].argmax(0)[sel] == 1, 15, right_closed=True)
        assert float(errs.per_image[i, 0]) == pytest.approx(ref, rel=1e-10)


def test_errors_are_clear():
    probs, labels = _data(b=1, seed=6)
    p, y = _t(probs), _t(labels[:, None])
    with pytest.raises(ValueError, match="spacing"):
        calibration_errors(p, y, "meep", region="boundary")
    with pytest.raises(ValueError, match="preset|Preset|meep"):
        calibration_errors(p, y, "torchmetrics")
    with pytest.raises(ValueError, match="mode|top_label"):
        calibration_errors(p, y, "meep", mode="classwise")
    with pytest.raises(ValueError, match="norm"):
        calibration_errors(p, y, "meep", norm="l3")
    with pytest.raises(TypeError, match="tensor"):
        calibration_errors(probs, labels, "meep")
    with pytest.raises(TypeError, match="include_background"):
        calibration_convention("meep", include_background="yes")
    with pytest.raises(TypeError, match="convention"):
        ExpectedCalibrationErrorMetric.from_convention(15)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ExpectedCalibrationErrorMetric.from_convention("meep", bogus=1)
    conv = calibration_convention("mbls")
    assert isinstance(conv, CalibrationConvention)
    with pytest.raises(ValueError, match="overrides"):
        calibration_errors(p, y, conv, num_bins=10)
    with pytest.raises(ValueError, match="mask must have shape"):
        calibration_errors(p, y, "mbls", mask=torch.ones(1, 1, 2, 2, 2, dtype=torch.bool))


# ---------------------------------------------------------------- properties
@st.composite
def _batches(draw):
    c = draw(st.integers(2, 4))
    b = draw(st.integers(1, 3))
    n = draw(st.integers(2, 40))
    scale = draw(st.sampled_from([0.3, 3.0, 30.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    probs = torch.softmax(torch.randn(b, c, n, 1, 1, generator=g, dtype=torch.float64) * scale, 1)
    target = torch.randint(0, c, (b, 1, n, 1, 1), generator=g)
    target[:, :, 0] = 1  # every image has some foreground
    return probs, target, g


@settings(max_examples=30, deadline=None)
@given(_batches(), st.sampled_from(["meep", "mbls", "monai"]), st.sampled_from(["l1", "max", "average"]))
def test_property_in_unit_interval_and_voxel_order_invariant(batch, preset, norm):
    probs, target, g = batch
    errs = calibration_errors(probs, target, preset, norm=norm)
    for v in (errs.per_image, errs.pooled, errs.macro, errs.micro):
        finite = v[~torch.isnan(v)]
        assert bool(((finite >= 0) & (finite <= 1)).all())
    perm = torch.randperm(probs.shape[2], generator=g)
    shuffled = calibration_errors(probs[:, :, perm], target[:, :, perm], preset, norm=norm)
    torch.testing.assert_close(shuffled.per_image, errs.per_image, rtol=1e-12, atol=1e-14, equal_nan=True)
    torch.testing.assert_close(shuffled.pooled, errs.pooled, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_regions_enum_values():
    assert [str(r) for r in Region] == ["all", "foreground", "boundary"]
