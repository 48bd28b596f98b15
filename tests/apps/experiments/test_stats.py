"""Paired statistics and claims: checked against scipy, an enumerable bootstrap and hand computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from monai_meep.apps.experiments import claims, stats
from monai_meep.report import stats as paired_stats


def test_mean_difference_wilcoxon_and_seed_count_against_scipy():
    rng = np.random.default_rng(3)
    ref = rng.normal(10.0, 2.0, size=(3, 12))
    row = ref - 0.5 + rng.normal(0.0, 0.4, size=(3, 12))
    d = paired_stats.paired_difference(row, ref, higher_is_better=False)
    assert d.n_pairs == 36 and d.n_seeds == 3 and d.n_subjects == 12 and d.n_dropped == 0
    assert d.mean_difference == pytest.approx(float((row - ref).mean()), abs=1e-12)
    assert d.mean_row == pytest.approx(row.mean()) and d.mean_reference == pytest.approx(ref.mean())
    assert d.wilcoxon_p == pytest.approx(sps.wilcoxon((row - ref).ravel()).pvalue, rel=1e-12)
    assert d.seeds_better == int(((row - ref).mean(axis=1) < 0).sum())
    assert d.ci_low < d.mean_difference < d.ci_high < 0 and d.verdict == "better"
    # same comparison with the direction flipped: the interval is the same, the verdict the opposite
    up = paired_stats.paired_difference(row, ref, higher_is_better=True)
    assert (up.ci_low, up.ci_high) == (d.ci_low, d.ci_high) and up.verdict == "worse" and up.seeds_better == 0


def test_bootstrap_resamples_subjects_with_seeds_paired():
    """A loop written from the definition, with the same generator draws, gives the same interval."""
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(2, 5))
    row = ref + rng.normal(0.2, 1.0, size=(2, 5))
    d = paired_stats.paired_difference(row, ref, higher_is_better=True, n_resamples=500, rng_seed=11)
    draws = np.random.default_rng(11).integers(0, 5, size=(500, 5))
    means = [np.mean([row[s, j] - ref[s, j] for s in range(2) for j in draws[b]]) for b in range(500)]
    assert (d.ci_low, d.ci_high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)


def test_bootstrap_of_two_subjects_is_the_enumerated_distribution():
    """With 2 subjects the resampling distribution is {d0, (d0+d1)/2, d1} with weights 1/4, 1/2, 1/4: the 2.5 % and
    97.5 % quantiles are exactly the smaller and the larger subject difference."""
    ref = np.array([[1.0, 1.0], [2.0, 2.0]])
    row = ref + np.array([[0.1, 0.5], [0.3, 0.7]])  # subject differences (mean over seeds): 0.2 and 0.6
    d = paired_stats.paired_difference(row, ref, higher_is_better=True)
    assert d.ci_low == pytest.approx(0.2) and d.ci_high == pytest.approx(0.6) and d.verdict == "better"
    support = {round(float(np.mean([[0.2, 0.6][i] for i in pick])), 12) for pick in itertools.product([0, 1], repeat=2)}
    assert support == {0.2, 0.4, 0.6}


def test_agrees_with_scipy_bootstrap_percentile_for_one_seed():
    rng = np.random.default_rng(0)
    diff = rng.normal(0.3, 1.0, size=40)
    d = paired_stats.paired_difference(diff[None], np.zeros((1, 40)), higher_is_better=True, n_resamples=20000)
    ref = sps.bootstrap((diff,), np.mean, n_resamples=20000, method="percentile", random_state=1).confidence_interval
    assert d.ci_low == pytest.approx(ref.low, abs=0.03) and d.ci_high == pytest.approx(ref.high, abs=0.03)


def test_non_finite_pairs_are_dropped_and_counted_and_zero_differences_are_not_evidence():
    ref = np.array([[1.0, 2.0, 3.0, 4.0]])
    row = np.array([[1.5, math.inf, 3.5, 4.5]])
    d = paired_stats.paired_difference(row, ref, higher_is_better=False)
    assert d.n_pairs == 3 and d.n_dropped == 1 and d.mean_difference == pytest.approx(0.5)
    same = paired_stats.paired_difference(ref, ref, higher_is_better=True)
    assert same.mean_difference == 0 and same.wilcoxon_p == 1.0 and same.verdict == "inconclusive"
    empty = paired_stats.paired_difference(np.full((1, 2), np.nan), ref[:, :2], higher_is_better=True)
    assert empty.n_pairs == 0 and math.isnan(empty.mean_difference) and empty.verdict == "inconclusive"
    with pytest.raises(ValueError, match="one shape"):
        paired_stats.paired_difference(ref, ref[:, :2], higher_is_better=True)


def _folder(tmp_path, values: dict[str, np.ndarray]):
    """A results folder with per_subject CSVs: row -> (seeds, subjects) ECE values; other metrics from them."""
    (tmp_path / "per_subject").mkdir()
    for i, (row, v) in enumerate(values.items()):
        recs = [
            {
                "row": row,
                "seed": s,
                "subject": f"sub{j}",
                "DSC": 0.8 + 0.001 * j,
                "HD (mm)": 10.0,
                "Brier (x1e-4)": 10 * v[s, j],
                "Brier+": 0.1,
                "ECE (x1e-3)": v[s, j],
                "HD95 (mm)": 5.0,
            }
            for s in range(v.shape[0])
            for j in range(v.shape[1])
        ]
        pd.DataFrame(recs).to_csv(tmp_path / "per_subject" / f"r{i}.csv", index=False)
    return tmp_path


def test_paired_table_from_folder_matches_direct_computation_and_writes_files(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(4, 8, size=(3, 6))
    folder = _folder(
        tmp_path, {"Dice": base, "Dice+KL(Y_w)": base - 1.0 + rng.normal(0, 0.1, (3, 6)), "Dice+H(Y)": base + 0.0}
    )
    table = stats.paired_table(stats.read_per_subject(folder))
    hit = table[(table["row"] == "Dice+KL(Y_w)") & (table["reference"] == "Dice") & (table["metric"] == "ECE (x1e-3)")]
    data = stats.read_per_subject(folder)
    a = data[data.row == "Dice+KL(Y_w)"].sort_values(["seed", "subject"])["ECE (x1e-3)"].to_numpy().reshape(3, 6)
    direct = paired_stats.paired_difference(a, base, higher_is_better=False)
    assert float(hit["mean_difference"].iloc[0]) == pytest.approx(direct.mean_difference)
    assert float(hit["ci_high"].iloc[0]) == pytest.approx(direct.ci_high) and hit["verdict"].iloc[0] == "better"
    # comparisons whose rows are absent (CE, FL, PS ...) are skipped, not filled with NaN
    assert set(table["reference"]) <= {"Dice", "Dice+H(Y)"}
    files = stats.write_paired(folder, task="la")
    assert {p.rsplit("/", 1)[-1] for p in files} == {"paired.csv", "paired.md", "claims.md"}
    again = pd.read_csv(folder / "paired.csv")
    assert len(again) == len(table) and "| Dice+KL(Y_w) | Dice |" in (folder / "paired.md").read_text()


def test_duplicate_subjects_are_refused(tmp_path):
    folder = _folder(tmp_path, {"Dice": np.ones((1, 2))})
    pd.read_csv(folder / "per_subject" / "r0.csv").to_csv(folder / "per_subject" / "copy.csv", index=False)
    with pytest.raises(ValueError, match="more than once"):
        stats.read_per_subject(folder)
    with pytest.raises(FileNotFoundError):
        stats.read_per_subject(tmp_path / "nowhere")


def test_claim_verdicts(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.uniform(4, 8, size=(3, 8))
    folder = _folder(
        tmp_path,
        {
            "Dice": base,
            "Dice+KL(Y_w)": base - 1.0 + rng.normal(0, 0.1, (3, 8)),
            "Dice+H(Y_w)": base + 1.0 + rng.normal(0, 0.1, (3, 8)),
        },
    )
    checked = {c["claim"]: c for c in claims.check_claims(stats.paired_table(stats.read_per_subject(folder)), "la")}
    ece = checked["MEEP improves ECE over its base loss"]
    verdicts = {(x["row"], x["reference"]): x["verdict"] for x in ece["components"]}
    assert verdicts == {("Dice+H(Y_w)", "Dice"): "contradicted", ("Dice+KL(Y_w)", "Dice"): "holds"}
    assert ece["verdict"] == "mixed" and ece["counts"] == {"holds": 1, "contradicted": 1, "inconclusive": 0}
    # identical DSC: the interval is [0, 0], inside the 0.01 margin -> "does not degrade" holds
    assert checked["MEEP does not degrade DSC"]["verdict"] == "holds"
    assert checked["MEEP is better calibrated than focal loss"]["verdict"] == "not run"
    # Brier+ is identical in every row: every comparison inconclusive; DSC identical too but within the margin
    assert checked["MEEP improves Brier+ over its base loss"]["verdict"] == "inconclusive"
    # Brier: KL better, H(Y_w) worse (both by 10x the ECE shift) -> mixed; against H(Y) only KL and H(Y_w) exist
    assert checked["MEEP improves the Brier score over its base loss"]["verdict"] == "mixed"
    # the paper's difference for orientation: Dice+KL(Y_w) minus Dice ECE on LA in the paper's Table 1
    paper = next(x for x in ece["components"] if x["row"] == "Dice+KL(Y_w)")["paper_difference"]
    assert paper == pytest.approx(15.587 - 28.861)


def test_claims_summary_has_a_column_per_folder(tmp_path):
    base = np.arange(12, dtype=float).reshape(3, 4) + 4.0
    folder = _folder(tmp_path, {"Dice": base, "Dice+KL(Y_w)": base - 2.0 + 0.01 * np.arange(12).reshape(3, 4)})
    table = stats.paired_table(stats.read_per_subject(folder))
    md = claims.claims_summary({"LA": (table, "la"), "copy": (table, None)})
    header, rule, *body = md.strip().splitlines()
    assert header == "| claim | LA | copy |" and len(body) == len(claims.CLAIMS)
    ece = next(line for line in body if line.startswith("| MEEP improves ECE over its base loss"))
    hd = next(line for line in body if line.startswith("| MEEP does not degrade HD"))
    assert "**holds** (1 / 0 / 0)" in hd  # identical HD: within the margin
    assert ece.count("**holds** (1 / 0 / 0)") == 2
    assert "not run" in next(line for line in body if "focal loss |" in line)


def test_no_worse_claims_are_judged_against_the_margin():
    """A detectable DSC loss of 0.002 is within the 0.01 margin (holds); a certain loss of 0.05 contradicts; an
    interval straddling the margin is inconclusive. HD's margin is 5 % of the reference mean."""

    def verdict(metric, diff_low, diff_high, reference=0.85, higher=True):
        r = {
            "metric": metric,
            "ci_low": diff_low,
            "ci_high": diff_high,
            "higher_is_better": higher,
            "mean_reference": reference,
            "verdict": paired_stats._verdict(diff_low, diff_high, higher),
        }
        return claims._component(r, "no_worse")

    assert verdict("DSC", -0.003, -0.001) == "holds"
    assert verdict("DSC", -0.06, -0.04) == "contradicted"
    assert verdict("DSC", -0.02, 0.001) == "inconclusive"
    assert verdict("HD (mm)", 0.1, 0.4, reference=10.0, higher=False) == "holds"  # +0.4 mm < 0.5 mm
    assert verdict("HD (mm)", 0.6, 2.0, reference=10.0, higher=False) == "contradicted"
    assert verdict("HD (mm)", -1.0, 0.7, reference=10.0, higher=False) == "inconclusive"
