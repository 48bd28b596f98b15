# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Bad input: a clear error naming the case and file, or with skip_bad the case listed as skipped with its reason;
nothing written to ``out`` on error."""

from __future__ import annotations

import numpy as np
import pytest

from monai_meep.report import CaseError, calibration_report

from .conftest import AFFINE, make_cases, save_nifti, write_layout

RUN = dict(workers=1, progress=False, figures=False)
BAD = "case_100"


def _break(pred, lab, kind):
    """Make case BAD (of a 2-class NIfTI layout) bad in one way; returns the file the error must name."""
    f = pred / f"{BAD}.nii.gz"
    p = np.moveaxis(make_cases(1, 3, 2)[BAD][0], 0, -1)
    if kind == "logits":
        save_nifti(f, (p - 0.5) * 8)
    elif kind == "sum":
        save_nifti(f, p * 0.9)
    elif kind == "integer":
        save_nifti(f, (p > 0.5).astype(np.uint8))
    elif kind == "nan":
        q = p.copy()
        q[0, 0, 0, 0] = np.nan
        save_nifti(f, q)
    elif kind == "label_values":
        f = lab / f"{BAD}.nii.gz"
        y = np.zeros(p.shape[:3], np.uint8)
        y[2, 2, 2] = 5
        save_nifti(f, y)
    elif kind == "shape":
        save_nifti(f, p[:-1])
    elif kind == "affine":
        shifted = AFFINE.copy()
        shifted[0, 3] = 3.0  # the same voxels, 3 mm apart
        save_nifti(f, p, shifted)
    elif kind == "corrupt":
        f.write_bytes(b"\x1f\x8b not a nifti at all")
    elif kind == "unmatched":
        (lab / f"{BAD}.nii.gz").unlink()
    elif kind == "duplicate":
        np.save(pred / f"{BAD}.npy", np.moveaxis(p, -1, 0))
    return f


KINDS = {
    "logits": "logits",
    "sum": "not 1",
    "integer": "floating point",
    "nan": "NaN",
    "label_values": "outside the class set",
    "shape": "mis-shaped",
    "affine": "mismatched grids",
    "corrupt": "cannot read",
    "unmatched": "without a label",
    "duplicate": "duplicated",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_case_raises_then_skips(tmp_path, binary_cases, kind):
    pred, lab, _ = write_layout(tmp_path, binary_cases, "nifti")
    path = _break(pred, lab, kind)
    out = tmp_path / "out"
    with pytest.raises(CaseError, match=KINDS[kind]) as err:
        calibration_report(pred, lab, out, **RUN)
    assert err.value.case == BAD and BAD in str(err.value) and path.name in str(err.value)
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
    rep = calibration_report(pred, lab, out, skip_bad=True, **RUN)
    cases = rep.cases[rep.reference].set_index("case")
    assert cases.loc[BAD, "status"] == "skipped" and KINDS[kind] in cases.loc[BAD, "reason"]
    assert (cases.drop(BAD)["status"] == "ok").all() and len(cases) == 3
    assert BAD in (out / "summary.md").read_text() and KINDS[kind] in (out / "report.html").read_text()


def test_sum_tolerance_follows_dtype(tmp_path):
    """A channel sum off by 1.2e-3 passes in float16 (tolerance 3 eps = 2.9e-3) and fails in float32 (1e-3)."""
    cases = make_cases(3, 1, 3)
    (case, (p, y)), = cases.items()  # fmt: skip
    q = p.copy()
    q[0] += 1.2e-3 * ((q[0] > 0.2) & (q[0] < 0.9))
    for dtype, ok in ((np.float16, True), (np.float32, False)):
        d = tmp_path / np.dtype(dtype).name
        pred, lab, _ = write_layout(d, {case: (q.astype(dtype), y)}, "npy")  # NIfTI has no float16
        if ok:
            rep = calibration_report(pred, lab, **RUN)
            assert rep.summary.set_index("metric").loc["ECE [1]", "n"] == 1
        else:
            with pytest.raises(CaseError, match="tolerance 0.001 for float32"):
                calibration_report(pred, lab, **RUN)


def test_class_count_differs_between_cases(tmp_path):
    cases = make_cases(1, 2, 2) | make_cases(2, 1, 3)
    pred, lab, _ = write_layout(tmp_path, cases, "nifti")
    with pytest.raises(CaseError, match="3 classes, the cases before it have 2"):
        calibration_report(pred, lab, **RUN)


def test_out_that_is_not_a_report_is_kept(tmp_path, binary_cases):
    pred, lab, _ = write_layout(tmp_path, binary_cases, "nifti")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        calibration_report(pred, lab, out, **RUN)
    assert (out / "precious.txt").read_text() == "keep"
    # a previous report is replaced as a whole
    other = tmp_path / "rep"
    calibration_report(pred, lab, other, **RUN)
    (other / "stale.png").write_bytes(b"")
    calibration_report(pred, lab, other, **RUN)
    assert not (other / "stale.png").exists() and (other / "cases.csv").exists()


def test_labels_without_prediction_are_listed_not_errors(tmp_path):
    """A label folder of every subject, predictions of the test split only: scored, with one warning."""
    cases = make_cases(4, 3, 2)
    pred, lab, _ = write_layout(tmp_path, cases, "nifti")
    (pred / f"{next(iter(cases))}.nii.gz").unlink()
    with pytest.warns(UserWarning, match=r"1 label file\(s\) have no prediction and are not scored"):
        rep = calibration_report(pred, lab, **RUN)
    assert len(rep.cases[rep.reference]) == 2 and (rep.cases[rep.reference]["status"] == "ok").all()
