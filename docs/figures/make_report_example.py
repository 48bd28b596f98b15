# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Regenerate docs/figures/report_example.png and the worked example of docs/report.md (synthetic data).

    python docs/figures/make_report_example.py [--keep DIR]

Synthetic, phantom-like, not a trained network: 6 volumes of 64 x 64 x 32 voxels (1 x 1 x 2 mm), each with one rough
ellipsoidal "cavity" (the LA phantom's shape helper); a true foreground probability ``q`` falls from 1 to 0 over a
few mm around its surface, and the label is drawn from Bernoulli(q), so ``q`` is calibrated by construction. Two
"models" write MONAI ``SaveImaged``-style foreground maps ``<case>_prob.nii.gz``: ``calibrated`` predicts ``q``
with a little noise on the logit scale, ``overconfident`` predicts ``sigmoid(4 logit(q))`` (pushed to 0 and 1, like
a Dice-trained network). The report runs under each preset, prints the ECE table of docs/report.md, and the two
models side by side are screenshotted in headless Chromium. Deterministic (seed 0).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_meep.apps.phantoms._common import rotation_matrix, smooth_noise, soft_ellipsoid
from monai_meep.report import calibration_report

HERE = Path(__file__).resolve().parent
SHAPE, SPACING = (64, 64, 32), np.array([1.0, 1.0, 2.0])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_example(root: Path, n: int = 6) -> tuple[Path, Path, Path]:
    """Labels and the two models' foreground maps under ``root``; returns the three folders."""
    rng = np.random.default_rng(0)
    dirs = [root / d for d in ("labels", "calibrated", "overconfident")]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*SPACING, 1.0])
    for i in range(n):
        centre = np.array(SHAPE) / 2 + rng.uniform(-4, 4, 3)
        radii = rng.uniform(12, 18, 3)
        box, frac = soft_ellipsoid(SHAPE, SPACING, centre, radii, rotation_matrix(rng.uniform(0, np.pi, 3)), rng, 0.15)
        inside = np.zeros(SHAPE, np.float32)
        inside[box] = frac
        # a smooth true probability: 1 inside, 0 outside, a ~3 mm wide transition at the (noisy) surface
        q = _sigmoid(4.0 * (inside - 0.5) + 0.8 * smooth_noise(SHAPE, rng, 2.0) * (np.abs(inside - 0.5) < 0.5))
        q = np.clip(q + 0.4 * (inside > 0.99) - 0.4 * (inside < 0.01), 0, 1)
        label = (rng.random(SHAPE) < q).astype(np.uint8)
        calibrated = _sigmoid(_logit(q) + 0.3 * rng.standard_normal(SHAPE))  # noise where q is uncertain
        overconfident = _sigmoid(4.0 * _logit(q))
        case = f"case_{i:03d}"
        nib.save(nib.Nifti1Image(label, affine), str(dirs[0] / f"{case}.nii.gz"))
        for d, p in zip(dirs[1:], (calibrated, overconfident), strict=True):
            nib.save(nib.Nifti1Image(p.astype(np.float32), affine), str(d / f"{case}_prob.nii.gz"))
    return dirs[0], dirs[1], dirs[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", default=None, help="write the data and reports here instead of a temporary folder")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="report_example_"))
    labels, calibrated, overconfident = write_example(root)
    kw = dict(pred_pattern=r"(?P<case>.+)_prob", progress=False, figures=False)
    print("| preset | model | ECE (mean over cases) | ECE (pooled) |\n|:---|:---|---:|---:|")
    for preset, col in (("meep", "ECE"), ("mbls", "ECE"), ("monai", "ECE [mean]")):
        for model in (calibrated, overconfident):
            s = calibration_report(model, labels, preset=preset, **kw).summary.set_index("metric")
            print(f"| {preset} | {model.name} | {s.loc[col, 'mean']:.4f} | {s.loc[col, 'pooled']:.4f} |")
    out = root / "report"
    calibration_report(
        overconfident, labels, out, compare=[calibrated], pred_pattern=kw["pred_pattern"], progress=False
    )
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print(f"no Chromium: open {out / 'report.html'} yourself")
        return
    shot = HERE / "report_example.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={root / 'chromium'}",
           f"--screenshot={shot}", "--window-size=1200,1600", (out / "report.html").as_uri()]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    print(f"wrote {shot} (report in {out})")


if __name__ == "__main__":
    main()
