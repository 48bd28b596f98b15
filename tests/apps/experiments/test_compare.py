"""The README main command at its quick setting: ``python -m monai_meep.apps.experiments compare --budget quick``."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest

from monai_meep.apps.bundle.runner import read_metrics
from monai_meep.apps.experiments.__main__ import main
from monai_meep.apps.experiments.compare import COLUMNS, format_table, summarise


def test_summarise_matches_numpy_and_keeps_inf():
    v = {"a": 0.5, "b": 0.7, "c": 0.9}
    m, s, n = summarise(v, scale=10.0)
    x = np.array(list(v.values())) * 10.0
    assert n == 3 and m == pytest.approx(x.mean()) and s == pytest.approx(x.std(ddof=1))
    assert math.isnan(summarise({"a": 0.5})[1])  # one subject: no sample std
    m, s, n = summarise({"a": 1.0, "b": math.inf})
    assert math.isinf(m) and math.isnan(s)
    table = format_table({"A": {c[1]: (1.0, 0.5, 2) for c in COLUMNS}}, markdown=True)
    assert table.splitlines()[0].startswith("| Model | DSC |") and "1.000 (0.500)" in table


@pytest.mark.slow
def test_compare_quick_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MONAI_MEEP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["compare", "--budget", "quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Dice + MEEP (KL)" in printed and "ECE (x1e-3)" in printed
    for f in ("compare.md", "compare.csv", "reliability.png", "probability_histogram.png", "timings.json"):
        assert (out / f).is_file() and os.path.getsize(out / f) > 0, f
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} == {"Dice", "Dice + MEEP (KL)"}
    assert {r["metric"] for r in rows} == {c[1] for c in COLUMNS}
    # the table is the per-subject CSVs of each evaluation, recomputed independently
    for slug, model in (("dice", "Dice"), ("dice_meep_kl", "Dice + MEEP (KL)")):
        raw = read_metrics(out / slug / "eval" / "test")
        for key, header, scale, _ in COLUMNS:
            vals = np.array(list(raw[key].values())) * scale
            row = next(r for r in rows if r["model"] == model and r["metric"] == header)
            assert int(row["n"]) == len(vals) >= 1
            if np.all(np.isfinite(vals)) and len(vals) > 1:
                assert float(row["mean"]) == pytest.approx(vals.mean(), rel=1e-9)
                assert float(row["std"]) == pytest.approx(vals.std(ddof=1), rel=1e-9, abs=1e-12)
            if key in ("test_mean_dice", "test_brier", "test_brier_plus", "test_ece"):
                assert np.all(np.isfinite(vals)), (model, key, vals)
    # the printed paired differences are MEEP minus Dice per subject, recomputed from the two evaluations
    base, meep = read_metrics(out / "dice" / "eval" / "test"), read_metrics(out / "dice_meep_kl" / "eval" / "test")
    assert "Paired difference, Dice + MEEP (KL) minus Dice" in printed and "one seed" in printed.lower()
    subjects = sorted(base["test_ece"])
    diff = np.mean([(meep["test_ece"][s] - base["test_ece"][s]) * 1e3 for s in subjects])
    line = next(ln for ln in printed.splitlines() if ln.strip().startswith("ECE (x1e-3)") and "[" in ln)
    assert float(line.split()[2]) == pytest.approx(diff, abs=0.006)  # printed with 2 decimals
    assert "Paired difference" in (out / "compare.md").read_text()
    # the two models differ only by the regulariser, and the MEEP run used the paper's LA + Dice lambda
    log = (out / "dice_meep_kl" / "bundle.log").read_text()
    assert "Engine run" in log
