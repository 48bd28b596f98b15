"""The convergence check, mocked at the bundle boundary: what it trains, what it reads, and its verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_meep.experiments import convergence, table1


class FakeBundle:
    """Records calls; an evaluation writes a per-subject DSC that depends on the epochs trained."""

    def __init__(self, dsc):
        self.calls: list[tuple[str, dict]] = []
        self.dsc = dsc  # (row, epochs) -> validation DSC

    def __call__(self, task, workflow, overrides=None, **kwargs):
        self.calls.append((workflow, dict(overrides)))
        if workflow == "evaluate":
            d = Path(overrides["eval_dir"])
            d.mkdir(parents=True, exist_ok=True)
            v = self.dsc[(overrides["base_loss"], overrides["max_epochs"])]
            # two subjects whose mean is v
            (d / "val_mean_dice_raw.csv").write_text(
                f"filename,class0,mean\na,{v - 0.01},{v - 0.01}\nb,{v + 0.01},{v + 0.01}\n"
            )
        return 1.5


@pytest.fixture
def budget():
    return table1.BUDGETS["cpu"]["la"]


def test_trains_each_base_row_at_1x_and_2x_and_reads_the_validation_split(tmp_path, monkeypatch, budget):
    e = budget["max_epochs"]
    fake = FakeBundle({("dice", e): 0.90, ("dice", 2 * e): 0.905, ("ce", e): 0.88, ("ce", 2 * e): 0.86})
    monkeypatch.setattr(convergence, "run_bundle", fake)
    res = convergence.run_convergence(task="la", budget="cpu", out=tmp_path)
    trains = [o for w, o in fake.calls if w == "train"]
    assert [(o["base_loss"], o["regularizer"], o["max_epochs"]) for o in trains] == [
        ("dice", "none", e),
        ("dice", "none", 2 * e),
        ("ce", "none", e),
        ("ce", "none", 2 * e),
    ]
    step = budget.get("lr_step_epochs", 10)
    assert [o["lr_step_epochs"] for o in trains] == [step, 2 * step, step, 2 * step]
    assert all(o["val_interval"] == o["max_epochs"] and o["seed"] == 0 for o in trains)
    evals = [o for w, o in fake.calls if w == "evaluate"]
    assert len(evals) == 4 and {o["eval_split"] for o in evals} == {"validation"}  # never the test split
    assert res["rows"]["dice"]["change"] == pytest.approx(0.005) and res["rows"]["dice"]["converged"]
    assert res["rows"]["ce"]["change"] == pytest.approx(-0.02) and not res["rows"]["ce"]["converged"]
    assert not res["converged"]
    md = (tmp_path / "convergence.md").read_text()
    assert "| dice |" in md and "+0.0050" in md and "| no |" in md
    assert json.loads((tmp_path / "convergence.json").read_text())["rows"]["ce"]["dsc_2x"] == pytest.approx(0.86)
    # a rerun reads the finished runs' records and trains nothing
    n = len(fake.calls)
    again = convergence.run_convergence(task="la", budget="cpu", out=tmp_path)
    assert len(fake.calls) == n and again["rows"] == res["rows"]


def test_bad_task_and_budget():
    with pytest.raises(ValueError, match="task"):
        convergence.run_convergence(task="brain")
    with pytest.raises(ValueError, match="budget"):
        convergence.run_convergence(task="la", budget="huge")
