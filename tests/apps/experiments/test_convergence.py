"""The convergence check, mocked at the bundle boundary: what it trains, what it reads, and its verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from monai_meep.apps.experiments import convergence, table1


class FakeBundle:
    """Records calls; a training run logs validation DSC to TensorBoard as the bundle's handler does."""

    def __init__(self, dsc):
        self.calls: list[tuple[str, dict]] = []
        self.dsc = dsc  # (row, seed, epoch) -> validation DSC

    def __call__(self, task, workflow, overrides=None, **kwargs):
        self.calls.append((workflow, dict(overrides)))
        every = overrides["val_interval"]
        writer = SummaryWriter(log_dir=str(Path(overrides["run_dir"]) / "logs"))
        for epoch in range(every, overrides["max_epochs"] + 1, every):
            writer.add_scalar("val_mean_dice", self.dsc[(overrides["base_loss"], overrides["seed"], epoch)], epoch)
        writer.close()
        return 1.5


def test_one_2x_run_per_row_and_seed_validated_at_1x_and_2x(tmp_path, monkeypatch):
    e = table1.BUDGETS["cpu"]["la"]["max_epochs"]
    dsc = {("dice", s, e): 0.90 + 0.01 * s for s in range(3)}
    dsc |= {("dice", s, 2 * e): 0.905 + 0.01 * s for s in range(3)}  # +0.005 each: converged
    dsc |= {("ce", s, e): 0.80 for s in range(3)} | {("ce", s, 2 * e): v for s, v in enumerate([0.83, 0.82, 0.84])}
    fake = FakeBundle(dsc)
    monkeypatch.setattr(convergence, "run_bundle", fake)
    res = convergence.run_convergence(task="la", budget="cpu", out=tmp_path)
    assert [(w, o["base_loss"], o["regularizer"], o["seed"]) for w, o in fake.calls] == [
        ("train", r, "none", s) for r in ("dice", "ce") for s in range(3)
    ]
    assert all(o["max_epochs"] == 2 * e and o["val_interval"] == e for _, o in fake.calls)
    assert all("eval_split" not in o for _, o in fake.calls)  # the test split is never evaluated
    dice, ce = res["rows"]["dice"], res["rows"]["ce"]
    assert dice["dsc_1x"] == pytest.approx(0.91, abs=1e-6) and dice["change"] == pytest.approx(0.005, abs=1e-6)
    assert dice["converged"] and not ce["converged"] and ce["change"] == pytest.approx(0.03, abs=1e-6)
    assert ce["seeds"][1]["dsc_2x"] == pytest.approx(0.82, abs=1e-6) and not res["converged"]
    md = (tmp_path / "convergence.md").read_text()
    assert "| dice | 0.9100 | 0.9150 | +0.0050 | yes |" in md and "| ce |" in md and "| no |" in md
    assert json.loads((tmp_path / "convergence.json").read_text())["rows"]["ce"]["dsc_2x"] == pytest.approx(0.83)
    # a rerun reads the finished runs' records and trains nothing
    n = len(fake.calls)
    again = convergence.run_convergence(task="la", budget="cpu", out=tmp_path)
    assert len(fake.calls) == n and again["rows"] == res["rows"]


def test_a_run_without_both_validations_is_an_error(tmp_path, monkeypatch):
    e = table1.BUDGETS["cpu"]["la"]["max_epochs"]

    def no_2x(task, workflow, overrides=None, **kwargs):
        w = SummaryWriter(log_dir=str(Path(overrides["run_dir"]) / "logs"))
        w.add_scalar("val_mean_dice", 0.9, e)
        w.close()
        return 1.0

    monkeypatch.setattr(convergence, "run_bundle", no_2x)
    with pytest.raises(RuntimeError, match=f"epoch\\(s\\) \\[{2 * e}\\]"):
        convergence.run_convergence(task="la", budget="cpu", out=tmp_path, rows=("dice",), seeds=1)
    assert not (tmp_path / "runs" / "dice_seed0" / "done.json").exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="task"):
        convergence.run_convergence(task="brain")
    with pytest.raises(ValueError, match="budget"):
        convergence.run_convergence(task="la", budget="huge")
    with pytest.raises(ValueError, match="row"):
        convergence.run_convergence(task="la", rows=("dice", "unet"))
    with pytest.raises(ValueError, match="seeds"):
        convergence.run_convergence(task="la", seeds=0)


class StretchFakeBundle(FakeBundle):
    """Validation DSC keyed by the run's length, so a 1x run and a stretched 2x run are told apart."""

    def __call__(self, task, workflow, overrides=None, **kwargs):
        self.calls.append((workflow, dict(overrides)))
        writer = SummaryWriter(log_dir=str(Path(overrides["run_dir"]) / "logs"))
        e = overrides["max_epochs"]
        for epoch in range(overrides["val_interval"], e + 1, overrides["val_interval"]):
            # the value a run of this length reaches at this epoch (a 2x run's midpoint differs from a 1x run's end)
            writer.add_scalar("val_mean_dice", self.dsc[(overrides["base_loss"], overrides["seed"], e, epoch)], epoch)
        writer.close()
        return float(e)


def test_a_schedule_fitted_to_the_budget_is_stretched_in_a_second_run(tmp_path, monkeypatch):
    """A budget with its own lr_step_epochs: the 1x run is the budget's, the 2x run doubles epochs and lr steps; the
    2x run's midpoint (a model still at a high rate) is never read as the 1x value."""
    e = table1.BUDGETS["cpu"]["wmh"]["max_epochs"]
    step = 3
    dsc = {}
    for s in range(2):
        for row, one, mid, two in (("dice", 0.60, 0.10, 0.605), ("ce", 0.50, 0.10, 0.56)):
            dsc[(row, s, e, e)] = one + 0.01 * s
            dsc[(row, s, 2 * e, e)] = mid
            dsc[(row, s, 2 * e, 2 * e)] = two + 0.01 * s
    fake = StretchFakeBundle(dsc)
    monkeypatch.setattr(convergence, "run_bundle", fake)
    res = convergence.run_convergence(task="wmh", budget="cpu", out=tmp_path, seeds=2, extra={"lr_step_epochs": step})
    runs = [(o["base_loss"], o["seed"], o["max_epochs"], o["lr_step_epochs"]) for _, o in fake.calls]
    assert runs == [(r, s, n * e, n * step) for r in ("dice", "ce") for s in range(2) for n in (1, 2)]
    assert res["schedule"] == "stretched"
    dice, ce = res["rows"]["dice"], res["rows"]["ce"]
    assert dice["dsc_1x"] == pytest.approx(0.605) and dice["dsc_2x"] == pytest.approx(0.61)
    assert dice["converged"] and not ce["converged"] and ce["change"] == pytest.approx(0.06)
    assert dice["seeds"][1]["train_s_2x"] == pytest.approx(2 * e)
    assert f"lr step every {2 * step} epochs instead of {step}" in (tmp_path / "convergence.md").read_text()
    n = len(fake.calls)  # resumable: each finished run, 1x or 2x, is kept
    assert (
        convergence.run_convergence(task="wmh", budget="cpu", out=tmp_path, seeds=2, extra={"lr_step_epochs": step})[
            "rows"
        ]
        == res["rows"]
    )
    assert len(fake.calls) == n


def test_markers_written_before_curves_were_recorded_are_read(tmp_path, monkeypatch):
    """A finished run from an earlier version (dsc_1x / dsc_2x / train_s_2x only) is not trained again."""
    e = table1.BUDGETS["cpu"]["la"]["max_epochs"]
    marker = tmp_path / "runs" / "dice_seed0" / "done.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"dsc_1x": 0.9, "dsc_2x": 0.904, "train_s_2x": 12.0, "overrides": {}}))
    monkeypatch.setattr(convergence, "run_bundle", lambda *a, **k: pytest.fail("trained a finished run"))
    res = convergence.run_convergence(task="la", budget="cpu", out=tmp_path, rows=("dice",), seeds=1)
    assert res["rows"]["dice"]["change"] == pytest.approx(0.004) and res["schedule"] == "continued"
    assert res["rows"]["dice"]["seeds"][0]["train_s_2x"] == 12.0 and e > 0
