# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Report values in every layout against a float64 NumPy computation (and MONAI) over all voxels at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import CalibrationErrorMetric, compute_hausdorff_distance

from monai_meep.metrics.conventions import calibration_convention
from monai_meep.report import calibration_report

from .conftest import SPACING, make_cases, save_nifti, write_layout
from .reference import reference

RUN = dict(workers=2, progress=False, figures=False)


def _check(report, cases, conv, masks=None):
    df = report.cases[report.reference].set_index("case")
    assert list(df["status"]) == ["ok"] * len(cases)
    summary = report.summary.set_index("metric")
    pooled_p, pooled_y, pooled_m = [], [], []
    for case, (p, y) in cases.items():
        m = None if masks is None else masks[case]
        ref = reference(p, y, conv.num_bins, conv.mode, conv.include_background, m)
        for col, v in ref.items():
            assert df.loc[case, col] == pytest.approx(v, rel=1e-9, abs=1e-12), (case, col)
        pooled_p.append(p)
        pooled_y.append(y)
        pooled_m.append(np.ones(y.shape, bool) if m is None else m)
    # pooled: all voxels of all cases at once (concatenated along the last axis)
    ref = reference(np.concatenate(pooled_p, -1), np.concatenate(pooled_y, -1), conv.num_bins, conv.mode,
                    conv.include_background, np.concatenate(pooled_m, -1))  # fmt: skip
    for col, v in ref.items():
        assert summary.loc[col, "pooled"] == pytest.approx(v, rel=1e-9, abs=1e-12), col
    return df


@pytest.mark.parametrize("layout", ["nifti", "per_class", "npz", "npy"])
def test_layouts_multiclass_meep(tmp_path, multi_cases, layout):
    pred, lab, kw = write_layout(tmp_path, multi_cases, layout)
    rep = calibration_report(pred, lab, preset="meep", **kw, **RUN)
    df = _check(rep, multi_cases, calibration_convention("meep"))
    # geometry: DSC and HD / HD95 in mm against MONAI on the arg-max prediction
    for case, (p, y) in multi_cases.items():
        hard = p.argmax(0)
        for k in (1, 2):
            a, b = hard == k, y == k
            assert df.loc[case, f"DSC [{k}]"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
        oh = lambda x: torch.from_numpy(np.stack([x == k for k in range(3)])[None].astype(np.float32))  # noqa: E731
        for col, q in (("HD (mm)", None), ("HD95 (mm)", 95)):
            hd = compute_hausdorff_distance(oh(hard), oh(y), include_background=False, percentile=q, spacing=SPACING)
            assert [df.loc[case, f"{col} [{k}]"] for k in (1, 2)] == pytest.approx(hd[0].tolist(), rel=1e-5)
        assert df.loc[case, "spacing (mm)"].startswith("1.5x1x2")


@pytest.mark.parametrize("layout", ["nifti", "nifti_fg"])
def test_binary_layouts(tmp_path, binary_cases, layout):
    pred, lab, kw = write_layout(tmp_path, binary_cases, layout)
    rep = calibration_report(pred, lab, **kw, **RUN)
    # the foreground layout stores p_fg only: the reference scores [1 - p_fg, p_fg] as the report does
    cases = {c: (p[1:] if layout == "nifti_fg" else p, y) for c, (p, y) in binary_cases.items()}
    df = _check(rep, cases, calibration_convention("meep"))
    assert {"ECE", "Brier", "Brier+", "DSC", "HD (mm)"} <= set(df.columns)  # one foreground class: plain names


def test_preset_mbls_foreground_top_label(tmp_path, multi_cases):
    pred, lab, kw = write_layout(tmp_path, multi_cases, "nifti")
    rep = calibration_report(pred, lab, preset="mbls", **RUN)
    masks = {c: y > 0 for c, (_, y) in multi_cases.items()}
    df = _check(rep, multi_cases, calibration_convention("mbls"), masks)
    assert "ECE" in df.columns and "ECE [1]" not in df.columns  # top-label: one value per case


def test_preset_monai_matches_calibration_error_metric(tmp_path, multi_cases):
    pred, lab, kw = write_layout(tmp_path, multi_cases, "nifti")
    rep = calibration_report(pred, lab, preset="monai", **RUN)
    df = _check(rep, multi_cases, calibration_convention("monai"))
    # MONAI 1.6 per (image, class), 20 bins; right=True gives our [k/K, (k+1)/K) bins
    for name, red in (("ECE", "expected"), ("ACE", "average"), ("MCE", "maximum")):
        metric = CalibrationErrorMetric(num_bins=20, include_background=True, calibration_reduction=red,
                                        metric_reduction="none", right=True)  # fmt: skip
        for case, (p, y) in multi_cases.items():
            onehot = np.stack([y == k for k in range(3)])[None].astype(np.float32)
            v = metric(torch.from_numpy(p[None].astype(np.float64)), torch.from_numpy(onehot).double())
            assert [df.loc[case, f"{name} [{k}]"] for k in range(3)] == pytest.approx(v[0].tolist(), abs=1e-6)


def _band_brute_force(y: np.ndarray, width: float) -> np.ndarray:
    """Voxels whose centre is within ``width`` mm of a voxel centre of another class (pairwise distances)."""
    pts = np.argwhere(np.ones(y.shape, bool)) * np.array(SPACING)
    lab = y.reshape(-1)
    out = np.zeros(lab.size, bool)
    for c in range(1, int(y.max()) + 1):
        inside = lab == c
        d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
        near_out = (d[:, ~inside] <= width).any(1)
        near_in = (d[:, inside] <= width).any(1)
        out |= np.where(inside, near_out, near_in)
    return out.reshape(y.shape)


def test_boundary_region(tmp_path):
    cases = make_cases(5, 2, 2)
    pred, lab, _ = write_layout(tmp_path, cases, "nifti")
    rep = calibration_report(pred, lab, region="boundary", band_mm=2.0, **RUN)
    masks = {c: _band_brute_force(y, 2.0) for c, (_, y) in cases.items()}
    assert all(m.any() and not m.all() for m in masks.values())
    _check(rep, cases, calibration_convention("meep", region="boundary", band_mm=2.0), masks)
    assert "within 2 mm" in rep.states[rep.reference].convention.describe()


def test_ignore_index_is_not_scored(tmp_path):
    """WMH-style label 2 ("other pathology") with a binary prediction: left out of the calibration metrics."""
    cases = make_cases(8, 2, 2)
    for _, y in cases.values():
        y[0, :3] = 2
    pred, lab, _ = write_layout(tmp_path, cases, "nifti")
    with pytest.raises(Exception, match="outside the class set"):
        calibration_report(pred, lab, **RUN)
    rep = calibration_report(pred, lab, ignore_index=2, **RUN)
    masks = {c: y != 2 for c, (_, y) in cases.items()}
    df = _check(rep, cases, calibration_convention("meep"), masks)
    for case, (p, y) in cases.items():
        a, b = p.argmax(0) == 1, y == 1  # label 2 counts as background for DSC
        assert df.loc[case, "DSC"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_nested_label_layout_by_path_pattern(tmp_path, binary_cases):
    """WMH challenge labels ``<site>/<id>/wmh.nii.gz`` paired with the bundles' ``<site>_<id>_prob.nii.gz`` maps:
    a path pattern with two ``case`` groups gives the same report as the flat layout."""
    pred, lab, kw = write_layout(tmp_path / "flat", binary_cases, "nifti_fg")
    flat = calibration_report(pred, lab, **kw, **RUN)
    nested, maps = tmp_path / "challenge", tmp_path / "maps"
    maps.mkdir()
    for i, (p, y) in enumerate(binary_cases.values()):
        site = ("Utrecht", "GE3T")[i % 2]
        (nested / site / str(i)).mkdir(parents=True)
        save_nifti(nested / site / str(i) / "wmh.nii.gz", y)
        save_nifti(maps / f"{site}_{i}_prob.nii.gz", p[1])
    rep = calibration_report(maps, nested, pred_pattern=r"(?P<case>.+)_prob", label_glob="*/*/wmh.nii.gz",
                             label_pattern=r"(?P<case_site>[^/]+)/(?P<case>[^/]+)/wmh", **RUN)  # fmt: skip
    assert sorted(rep.cases[rep.reference]["case"]) == ["GE3T_1", "Utrecht_0", "Utrecht_2"]
    a, b = flat.summary.set_index("metric"), rep.summary.set_index("metric")
    np.testing.assert_allclose(b.loc[a.index, "pooled"].astype(float), a["pooled"].astype(float), rtol=1e-12)
