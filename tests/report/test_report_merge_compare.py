# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Exact merge of reports, --compare with paired statistics, the CLI, and the HTML in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from monai_meep.report import calibration_report, merge_reports
from monai_meep.report.__main__ import main

from .conftest import make_cases, write_layout

RUN = dict(workers=2, progress=False)
INT_FIELDS = ("counts", "positives", "top_counts", "top_correct")


def test_merge_of_two_reports_equals_one_report_of_both(tmp_path):
    a, b = make_cases(1, 2, 3), make_cases(2, 2, 3)
    pa, la, _ = write_layout(tmp_path / "a", a, "nifti")
    pb, lb, _ = write_layout(tmp_path / "b", b, "nifti")
    pall, lall, _ = write_layout(tmp_path / "all", a | b, "nifti")
    calibration_report(pa, la, tmp_path / "ra", figures=False, **RUN)
    calibration_report(pb, lb, tmp_path / "rb", figures=False, **RUN)
    one = calibration_report(pall, lall, tmp_path / "rall", figures=False, **RUN)
    merged = merge_reports([tmp_path / "ra", tmp_path / "rb"], tmp_path / "merged", figures=False)
    s1, s2 = one.histogram.state_dict(), merged.histogram.state_dict()
    for k in INT_FIELDS:
        assert np.array_equal(s1[k].numpy(), s2[k].numpy()), k  # counts: exact
    for k in s1:
        if k not in INT_FIELDS and hasattr(s1[k], "numpy"):
            np.testing.assert_allclose(s1[k].numpy(), s2[k].numpy(), rtol=1e-12, atol=0)  # float64: to rounding
    m1, m2 = one.summary.set_index("metric"), merged.summary.set_index("metric")
    pd.testing.assert_frame_equal(m1, m2, rtol=1e-12)
    c1 = one.cases[one.reference].drop(columns=["pred", "label"]).set_index("case").sort_index()
    c2 = pd.read_csv(tmp_path / "merged" / "cases.csv", dtype={"case": str}).set_index("case").sort_index()
    np.testing.assert_allclose(c1["ECE [1]"].to_numpy(float), c2["ECE [1]"].to_numpy(float), rtol=1e-9)
    with pytest.raises(ValueError, match="scored in both"):
        merge_reports([tmp_path / "ra", tmp_path / "ra"])
    calibration_report(pa, la, tmp_path / "rc", preset="mbls", figures=False, **RUN)
    with pytest.raises(ValueError, match="was made with"):
        merge_reports([tmp_path / "ra", tmp_path / "rc"])


def test_compare_paired_statistics(tmp_path):
    cases = make_cases(4, 6, 2)
    good, lab, _ = write_layout(tmp_path / "good", cases, "nifti")
    # a worse model: the same probabilities pushed to the extremes (over-confident)
    sharp = {c: (np.stack([1 - q, q]).astype(np.float32), y) for c, (p, y) in cases.items() for q in [p[1] ** 0.3]}
    worse, _, _ = write_layout(tmp_path / "sharp", sharp, "nifti")
    rep = calibration_report(good, lab, tmp_path / "out", compare=[worse], figures=False, **RUN)
    paired = rep.paired.set_index("metric")
    ece = paired.loc["ECE"]
    ref = rep.cases["good"].set_index("case")["ECE"]
    other = rep.cases["sharp"].set_index("case")["ECE"]
    assert ece["model"] == "sharp" and ece["reference"] == "good"
    assert ece["mean_difference"] == pytest.approx(float((other - ref).mean()), rel=1e-12)
    assert ece["n_pairs"] == 6 and ece["verdict"] == "worse"  # every case is worse calibrated
    assert bool(paired.loc["DSC", "higher_is_better"]) and not bool(ece["higher_is_better"])
    assert {"compare.csv", "paired.csv", "compare.md"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert (tmp_path / "out" / "models" / "sharp" / "histogram.pt").is_file()


def test_cli(tmp_path, capsys):
    cases = make_cases(6, 2, 2)
    pred, lab, _ = write_layout(tmp_path, cases, "npz")
    out = tmp_path / "out"
    argv = ["--pred", str(pred), "--label", str(lab), "--out", str(out), "--no-progress", "--workers", "1"]
    assert main(argv + ["--no-figures"]) == 2  # an nnU-Net folder holds .npz and .nii.gz of each case
    assert "duplicated" in capsys.readouterr().err and not out.exists()
    assert main(argv + ["--glob", "*.npz", "--preset", "mbls"]) == 0
    printed = capsys.readouterr().out
    assert "ECE" in printed and "report.html" in printed
    names = {p.name for p in out.iterdir()}
    assert {"cases.csv", "summary.csv", "summary.md", "report.html", "histogram.pt", "report.json"} <= names
    assert {"reliability_class1.png", "reliability_top_label.png", "probability_histogram_class1.png"} <= names
    assert main(["--merge", str(out), "--out", str(tmp_path / "merged"), "--no-figures"]) == 0


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_html_is_self_contained_and_renders(tmp_path):
    cases = make_cases(7, 2, 3)
    pred, lab, _ = write_layout(tmp_path, cases, "nifti")
    out = tmp_path / "out"
    calibration_report(pred, lab, out, **RUN)
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 6  # classes 1, 2 and top label, two figures each
    assert "http://" not in html and "https://" not in html and "<script" not in html
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
           f"--screenshot={shot}", "--window-size=1200,1600", (out / "report.html").as_uri()]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (1600, 1200) and img.std() > 10  # drawn, not a blank page
