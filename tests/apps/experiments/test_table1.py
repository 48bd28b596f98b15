"""Table 1 runner: a real quick-budget run through the LA bundle (2 trained rows + 1 post-hoc row, one seed), and
the full 13-row list with training mocked out at the bundle-run boundary (``table1.run_bundle``): layout, aggregation
against a NumPy recomputation, resume, locks, time limit, manifest and the domain-shift comparison."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from monai_meep.apps.bundle import runner as bundle_runner
from monai_meep.apps.experiments import domain_shift, table1
from monai_meep.apps.experiments.manifest import RunLock
from monai_meep.apps.experiments.table_format import COLUMNS, EXTRA_COLUMNS

pytestmark = pytest.mark.slow

METRIC_KEYS = [c[0] for c in COLUMNS + EXTRA_COLUMNS]
SUBJECTS = ["s1", "s2", "s3"]


@pytest.fixture(scope="module")
def phantom_cache(tmp_path_factory):
    """A private phantom cache for this module (hermetic; the quick LA phantom is generated once)."""
    old = os.environ.get("MONAI_MEEP_CACHE")
    os.environ["MONAI_MEEP_CACHE"] = str(tmp_path_factory.mktemp("meep_cache"))
    yield
    if old is None:
        os.environ.pop("MONAI_MEEP_CACHE", None)
    else:
        os.environ["MONAI_MEEP_CACHE"] = old


def _md_rows(path: Path) -> dict[str, list[str]]:
    """Data rows of the markdown table: row name -> cell texts (bold markers removed)."""
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| Training loss"):
            cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


# ------------------------------------------------------------------------------------------------ real quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, phantom_cache):
    out = tmp_path_factory.mktemp("table1_quick")
    res = table1.run_table1(
        task="la", out=out, rows=["Dice", "dice_ps", "Dice+KL(Y_w)"], seeds=1, budget="quick", progress=False
    )
    return out, res


def test_quick_run_fills_the_table(quick_run):
    out, res = quick_run
    assert res["complete"] and res["cells_done"] == res["cells_total"] == 3 and not res["stopped"]
    rows = _md_rows(out / "table1.md")
    assert list(rows) == ["Dice", "Dice+PS", "Dice+KL(Y_w)"]
    number = re.compile(r"^-?\d+\.\d{3} \(-\)$")  # one seed: no std
    for name, cells in rows.items():
        assert len(cells) == len(COLUMNS)
        for (_, header, _, _), text in zip(COLUMNS, cells, strict=True):
            cell = res["table"][name][header]
            if header.startswith("HD") and text == "n/a":
                # HD is undefined only for empty predictions (inf as in MONAI), and the table says so
                assert cell["n_nonfinite"] == cell["n_subjects"] > 0
                assert "HD undefined" in (out / "table1.md").read_text()
            else:
                assert number.match(text), (name, header, text)
    # per-model mean over subjects recomputed from the bundle's own per-subject CSVs, in the paper's units
    for name, slug, model, method in table1.resolve_rows(["dice", "dice_ps", "dice_klyw"]):
        eval_dir = out / "runs" / model / "seed0" / "eval" / ("test" if method is None else f"test_{method}")
        for key, header, scale, _ in COLUMNS:
            with open(eval_dir / f"{key}_raw.csv", newline="") as f:
                vals = np.array([float(r["mean"]) for r in csv.DictReader(f)], dtype=np.float64) * scale
            vals = vals[np.isfinite(vals)]
            if vals.size:
                assert res["table"][name][header]["mean"] == pytest.approx(vals.mean(), rel=1e-9)
        # per-subject CSV of the row, one line per test subject
        with open(out / "per_subject" / f"{slug}.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == res["table"][name]["DSC"]["n_subjects"] > 0
    for f in ("table1.csv", "reliability.png", "probability_histogram.png", "manifest.json"):
        assert (out / f).stat().st_size > 0


def test_quick_run_posthoc_reuses_the_vanilla_model(quick_run):
    out, _ = quick_run
    calib = out / "runs" / "dice" / "seed0" / "models" / "calibrator_platt.json"
    assert calib.is_file()  # fitted next to the Dice model by calibrate.json
    assert not (out / "runs" / "dice_ps").exists()  # no separate training for the post-hoc row
    manifest = json.loads((out / "manifest.json").read_text())
    ps = [r for r in manifest["runs"] if r["row"] == "Dice+PS"][0]
    assert ps["kind"] == "posthoc" and ps["method"] == "platt" and ps["overrides"]["base_loss"] == "dice"
    assert set(ps["stages_s"]) == {"calibrate_s", "evaluate_s"}


def test_quick_manifest_is_complete(quick_run):
    out, _ = quick_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["runs_done"] == m["runs_total"] == 3
    assert m["experiment"]["task"] == "la" and m["experiment"]["budget"] == "quick"
    assert m["env"]["versions"]["torch"] and m["env"]["versions"]["monai"] and "commit" in m["env"]["git"]
    for r in m["runs"]:
        assert r["wall_s"] > 0 and r["seed"] == 0 and r["overrides"]["seed"] == 0
        assert r["device"]["type"] in ("cpu", "cuda") and r["versions"]["torch"]
        assert r["overrides"]["max_epochs"] == table1.BUDGETS["quick"]["la"]["max_epochs"]
        assert r["started"] <= r["finished"]


def test_quick_resume_skips_finished_and_finishes_interrupted(quick_run, monkeypatch):
    out, res = quick_run
    markers = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("done_*.json")}
    assert len(markers) == 3

    def no_bundle(*a, **k):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(table1, "run_bundle", no_bundle)
    again = table1.run_table1(
        task="la", out=out, rows=["dice", "dice_ps", "dice_klyw"], seeds=1, budget="quick", progress=False
    )
    assert again["complete"] and {p: p.stat().st_mtime_ns for p in markers} == markers
    assert again["table"]["Dice"]["DSC"]["mean"] == res["table"]["Dice"]["DSC"]["mean"]
    # interrupted after training, before the evaluation finished: only the evaluation is redone
    (out / "runs" / "dice_klyw" / "seed0" / "done_train.json").unlink()
    calls = []

    def record(task, workflow, overrides=None, **k):
        calls.append((workflow, overrides["run_dir"]))
        return bundle_runner.run_bundle(task, workflow, overrides, **k)

    monkeypatch.setattr(table1, "run_bundle", record)
    table1.run_table1(
        task="la", out=out, rows=["dice", "dice_ps", "dice_klyw"], seeds=1, budget="quick", progress=False
    )
    assert [c[0] for c in calls] == ["evaluate"] and calls[0][1].endswith("dice_klyw/seed0")
    assert (out / "runs" / "dice_klyw" / "seed0" / "done_train.json").is_file()


# ------------------------------------------------------------------------------------ mocked at the bundle boundary


def _fake_value(key: str, overrides: dict, subject: str) -> float:
    """Deterministic synthetic metric per (model, seed, calibrator, subject), in the bundle's raw units."""
    tag = f"{overrides['base_loss']}/{overrides['regularizer']}/{overrides['seed']}/{overrides.get('calibrator', '')}"
    tag += f"/{overrides.get('uncertainty', 'none')}/{overrides.get('dropout', 0.0)}"
    rng = np.random.default_rng(zlib.crc32(f"{tag}|{key}|{subject}".encode()))
    return {
        "test_mean_dice": rng.uniform(0.5, 0.9),
        "test_hd_mm": rng.uniform(5, 30),
        "test_hd95_mm": rng.uniform(2, 9),
        "test_brier": rng.uniform(1e-4, 9e-4),
        "test_brier_plus": rng.uniform(0.05, 0.3),
        "test_ece": rng.uniform(1e-3, 3e-2),
    }[key]


class FakeBundle:
    """Stands in for ``run_bundle``: records calls and writes what evaluate.json writes (raw CSVs, bin table);
    ``legacy``: under the names and columns of the versions before the rename (``val_*``, no ``region``)."""

    def __init__(self, legacy: bool = False):
        self.calls: list[tuple[str, dict]] = []
        self.legacy = legacy

    def __call__(self, task, workflow, overrides=None, **kwargs):
        self.calls.append((workflow, dict(overrides)))
        if workflow == "train":
            (Path(overrides["run_dir"]) / "models").mkdir(parents=True, exist_ok=True)
            (Path(overrides["run_dir"]) / "models" / "model.pt").write_bytes(b"weights")
        if workflow == "evaluate":
            d = Path(overrides["eval_dir"])
            d.mkdir(parents=True, exist_ok=True)
            for key in METRIC_KEYS:
                if self.legacy:
                    lines = ["filename,class0,mean"]
                    lines += [f"{s},{v!r},{v!r}" for s in SUBJECTS for v in [_fake_value(key, overrides, s)]]
                    name = "val_" + key.removeprefix("test_")
                else:
                    lines = ["filename,foreground,mean,region"]
                    lines += [
                        f"{s},{v!r},{v!r},whole volume" for s in SUBJECTS for v in [_fake_value(key, overrides, s)]
                    ]
                    name = key
                (d / f"{name}_raw.csv").write_text("\n".join(lines) + "\n")
            rows = ["epoch,class,bin,lower,upper,count,confidence,frequency,ece_bins,ece"]
            rows += [
                f"1,1,{b},{b / 10},{(b + 1) / 10},{100 + b},{b / 10 + 0.05},{b / 10 + 0.02},15,0.03" for b in range(10)
            ]
            (d / "reliability.csv").write_text("\n".join(rows) + "\n")
        return 0.01


@pytest.fixture
def fake(monkeypatch):
    f = FakeBundle()
    monkeypatch.setattr(table1, "run_bundle", f)
    return f


def test_full_row_list_layout_and_aggregation(tmp_path, fake):
    res = table1.run_table1(task="wmh", out=tmp_path, seeds=3, budget="full", progress=False, figures=False)
    assert res["complete"] and res["cells_total"] == 13 * 3
    rows = _md_rows(tmp_path / "table1.md")
    assert list(rows) == [r[0] for r in table1.ROWS]
    assert all(re.match(r"^\d+\.\d{3} \(\d+\.\d{3}\)$", c) for cells in rows.values() for c in cells)
    # 9 trained models x 3 seeds; 4 post-hoc rows x 3 seeds, each a calibrate on the vanilla model + an evaluate
    trains = [o for w, o in fake.calls if w == "train"]
    assert len(trains) == 27 and len({(o["base_loss"], o["regularizer"], o["seed"]) for o in trains}) == 27
    cals = [o for w, o in fake.calls if w == "calibrate"]
    assert sorted((o["base_loss"], o["calibration_method"]) for o in cals) == sorted(
        [(b, m) for b in ("dice", "ce") for m in ("platt", "isotonic")] * 3
    )
    assert all(o["regularizer"] == "none" and o["run_dir"].endswith(f"{o['base_loss']}/seed{o['seed']}") for o in cals)
    # mean (sample std) over seeds of the per-model subject means, recomputed in NumPy from the raw values
    for name, _, model, method in table1.ROWS:
        for key, header, scale, _ in COLUMNS + EXTRA_COLUMNS:
            per_seed = []
            for seed in range(3):
                ov = {**table1.MODELS[model], "seed": seed, "calibrator": method or ""}
                per_seed.append(np.mean([_fake_value(key, ov, s) * scale for s in SUBJECTS]))
            cell = res["table"][name][header]
            assert cell["mean"] == pytest.approx(np.mean(per_seed), rel=1e-9)
            assert cell["std"] == pytest.approx(np.std(per_seed, ddof=1), rel=1e-9)
    # best per column in bold: the highest DSC, the lowest ECE
    dsc_best = max(res["table"], key=lambda r: round(res["table"][r]["DSC"]["mean"], 3))
    ece_best = min(res["table"], key=lambda r: round(res["table"][r]["ECE (x1e-3)"]["mean"], 3))
    md = (tmp_path / "table1.md").read_text()
    assert re.search(rf"^\| {re.escape(dsc_best)} \| \*\*", md, re.M)
    assert f"**{res['table'][ece_best]['ECE (x1e-3)']['mean']:.3f}" in md
    with open(tmp_path / "table1.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 13 * len(COLUMNS + EXTRA_COLUMNS)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["complete"] and m["runs_done"] == m["runs_total"] == 27 + 12 and len(m["runs"]) == 39
    assert len(list((tmp_path / "per_subject").glob("*.csv"))) == 13


def test_metric_names_are_the_test_splits():
    assert METRIC_KEYS == ["test_mean_dice", "test_hd_mm", "test_brier", "test_brier_plus", "test_ece", "test_hd95_mm"]


def test_evaluations_written_before_the_rename_still_fill_the_table(tmp_path, monkeypatch):
    """Evaluation folders of earlier versions (``val_*_raw.csv`` for the test split, no region column) give the
    same table as ones with the new names: a table run started before the rename resumes."""
    tables = {}
    for legacy in (False, True):
        monkeypatch.setattr(table1, "run_bundle", FakeBundle(legacy=legacy))
        out = tmp_path / str(legacy)
        res = table1.run_table1(task="la", out=out, rows=["dice", "dice_ps"], seeds=2, progress=False, figures=False)
        assert res["complete"]
        raw = bundle_runner.read_metrics(out / "runs" / "dice" / "seed0" / "eval" / "test")
        assert sorted(raw) == sorted(METRIC_KEYS), sorted(raw)
        tables[legacy] = ((out / "table1.csv").read_text(), (out / "per_subject" / "dice.csv").read_text())
    assert tables[True] == tables[False]


def test_read_metrics_prefers_the_new_name_and_keeps_validation_names_on_request(tmp_path):
    (tmp_path / "val_ece_raw.csv").write_text("filename,class0,mean\na,0.5,0.5\n")
    assert bundle_runner.read_metrics(tmp_path) == {"test_ece": {"a": 0.5}}
    assert bundle_runner.read_metrics(tmp_path, legacy_test_names=False) == {"val_ece": {"a": 0.5}}
    (tmp_path / "test_ece_raw.csv").write_text("filename,foreground,mean,region\na,0.25,0.25,whole volume\n")
    assert bundle_runner.read_metrics(tmp_path)["test_ece"] == {"a": 0.25}


def test_time_limit_stops_cleanly_and_rerun_continues(tmp_path, fake):
    res = table1.run_table1(
        task="la", out=tmp_path, rows=["dice", "ce"], seeds=2, progress=False, time_limit=0, figures=False
    )
    assert res["stopped"] and not res["complete"] and res["cells_done"] == 0 and not fake.calls
    assert "Partial: 0 of 4 runs" in (tmp_path / "table1.md").read_text()
    res = table1.run_table1(task="la", out=tmp_path, rows=["dice", "ce"], seeds=2, progress=False, figures=False)
    assert res["complete"] and not res["stopped"] and len(fake.calls) == 8


def test_locked_unit_is_left_to_its_owner(tmp_path, fake):
    lock = RunLock(tmp_path / "runs" / "dice" / "seed0" / ".lock_train")
    assert lock.acquire()  # another worker holds Dice seed 0
    try:
        res = table1.run_table1(
            task="la",
            out=tmp_path,
            rows=["dice", "dice_ir", "ce"],
            seeds=1,
            progress=False,
            time_limit=0.02,
            poll_s=0.2,
            figures=False,
        )
        assert res["stopped"] and res["cells_done"] == 1  # CE done; Dice and Dice+IR (needs Dice) wait
        assert {o["run_dir"].split("/runs/")[1] for _, o in fake.calls} == {"ce/seed0"}
    finally:
        lock.release()
    res = table1.run_table1(
        task="la", out=tmp_path, rows=["dice", "dice_ir", "ce"], seeds=1, progress=False, figures=False
    )
    assert res["complete"]


def test_posthoc_without_its_model_retrains_the_model(tmp_path, fake):
    table1.run_table1(task="la", out=tmp_path, rows=["dice", "dice_ps"], seeds=1, progress=False, figures=False)
    # the Dice model was trained in an earlier GPU session whose checkpoint did not come back; Dice+PS is pending
    (tmp_path / "runs" / "dice" / "seed0" / "models" / "model.pt").unlink()
    (tmp_path / "runs" / "dice" / "seed0" / "done_platt.json").unlink()
    fake.calls.clear()
    # a call that may start nothing (e.g. the GPU script's final aggregation) leaves the finished Dice row alone
    res = table1.run_table1(
        task="la", out=tmp_path, rows=["dice", "dice_ps"], seeds=1, progress=False, figures=False, time_limit=0
    )
    assert res["stopped"] and res["cells_done"] == 1 and not fake.calls
    res = table1.run_table1(task="la", out=tmp_path, rows=["dice", "dice_ps"], seeds=1, progress=False, figures=False)
    assert res["complete"] and [w for w, _ in fake.calls] == ["train", "evaluate", "calibrate", "evaluate"]


def test_other_experiment_in_out_folder_is_refused(tmp_path, fake):
    table1.run_table1(task="la", out=tmp_path, rows=["dice"], seeds=1, progress=False, figures=False)
    with pytest.raises(ValueError, match="another experiment"):
        table1.run_table1(task="la", out=tmp_path, rows=["dice"], seeds=1, backbone="resunet", progress=False)


def test_bad_rows_and_arguments():
    with pytest.raises(ValueError, match="unknown row"):
        table1.resolve_rows(["Dice", "MEEP"])
    assert [r[0] for r in table1.resolve_rows(["fl,CE+IR", "dice"])] == ["Dice", "CE+IR", "FL"]
    with pytest.raises(ValueError, match="budget"):
        table1.run_table1(task="la", budget="huge")
    with pytest.raises(ValueError, match="task"):
        table1.run_table1(task="brain")


def test_domain_shift_trains_on_two_sites_and_reports_the_change(tmp_path, fake):
    res = domain_shift.run_domain_shift(
        out=tmp_path,
        held_out_site="Utrecht",
        rows=["dice", "dice_klyw"],
        seeds=2,
        budget="quick",
        progress=False,
        figures=False,
    )
    assert res["complete"]
    loso = [o for w, o in fake.calls if o.get("split") == "loso"]
    assert loso and all(o["held_out_site"] == "Utrecht" for o in loso)
    assert all(o["run_dir"].startswith(str(tmp_path / "loso_Utrecht")) for o in loso)
    for row in ("Dice", "Dice+KL(Y_w)"):
        for _, h, _, _ in COLUMNS:
            want = res["shifted"]["Utrecht"]["table"][row][h]["mean"] - res["in_domain"]["table"][row][h]["mean"]
            assert res["delta"]["Utrecht"][row][h] == pytest.approx(want) and math.isfinite(want)
    md = (tmp_path / "domain_shift.md").read_text()
    assert "held-out site Utrecht" in md and "Change from in-domain" in md
    # a call that may start nothing still tabulates both finished parts
    (tmp_path / "domain_shift.md").unlink()
    n = len(fake.calls)
    again = domain_shift.run_domain_shift(
        out=tmp_path,
        held_out_site="Utrecht",
        rows=["dice", "dice_klyw"],
        seeds=2,
        budget="quick",
        progress=False,
        figures=False,
        time_limit=0,
    )
    assert again["complete"] and len(fake.calls) == n and (tmp_path / "domain_shift.md").read_text() == md


def test_extended_rows_train_the_fields_losses_and_pair_them_with_their_base(tmp_path, fake):
    """``--rows extended``: the paper's 13 rows, the field's losses (each trained with its bundle ``base_loss``) and
    the uncertainty baselines (evaluated through ``--uncertainty``), each paired with its base row in paired.csv."""
    import pandas as pd

    from monai_meep.apps.experiments import stats

    res = table1.run_table1(task="la", out=tmp_path, rows=["extended"], seeds=2, progress=False, figures=False)
    assert res["complete"] and res["cells_total"] == len(table1.ALL_ROWS) * 2 == 50
    assert list(_md_rows(tmp_path / "table1.md")) == [r[0] for r in table1.ALL_ROWS]
    trains = [o for w, o in fake.calls if w == "train"]
    assert {"ls", "ls_dice", "svls", "mbls", "nacl", "ml1ace", "flsd"} <= {o["base_loss"] for o in trains}
    assert len(trains) == len(table1.MODELS) * 2  # every model once per seed, the dropout variant included
    assert [o["dropout"] for o in trains if o.get("dropout")] == [table1.MC_DROPOUT_RATE] * 2
    uq = [o for w, o in fake.calls if w == "evaluate" and o.get("uncertainty")]
    assert sorted(o["uncertainty"] for o in uq) == sorted(["mc_dropout"] * 2 + ["tta"] * 2 + ["ensemble"] * 2)
    assert all(o["dropout"] == table1.MC_DROPOUT_RATE for o in uq if o["uncertainty"] == "mc_dropout")
    # one ensemble per row, of both seeds' models, evaluated once; its values fill both seeds' cells
    ens = [o for o in uq if o["uncertainty"] == "ensemble"]
    assert sorted(o["ensemble_ckpts"][1].split("/runs/")[1] for o in ens) == [
        "dice/seed1/models/model.pt",
        "dice_klyw/seed1/models/model.pt",
    ]
    per_subject = pd.read_csv(tmp_path / "per_subject" / "ens_dice.csv")
    by_seed = per_subject.pivot_table(index="subject", columns="seed", values="DSC")
    assert by_seed.shape[1] == 2 and (by_seed[0] == by_seed[1]).all()
    assert res["table"]["Ensemble(Dice)"]["DSC"]["std"] == 0.0
    paired = pd.read_csv(tmp_path / "paired.csv")
    pairs = set(zip(paired["row"], paired["reference"], strict=True))
    for base, rows in stats.EXTENDED_BASES.items():
        for row in rows:
            assert (row, base) in pairs and (f"{base}+KL(Y_w)", row) in pairs
    assert {("Ensemble(Dice)", "Dice"), ("Dice+MC dropout", "Dice+Dropout"), ("Dice+TTA", "Dice")} <= pairs
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["runs_done"] == m["runs_total"] == len(m["runs"])
    # a single extended row and a group mix; the order is the table's
    assert [r[0] for r in table1.resolve_rows(["svls", "paper"])][-1] == "SVLS"
    assert table1.resolve_rows(["paper"]) == table1.ROWS
    with pytest.raises(ValueError, match="seeds >= 2"):
        table1.run_table1(task="la", out=tmp_path / "one", rows=["ens_dice"], seeds=1, progress=False)
