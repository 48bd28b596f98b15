"""Table 1 figures and compare pool seeds from the exact calibration states, and read older folders' CSV bins."""

from __future__ import annotations

import shutil

import pytest
import torch

from monai_meep.apps.experiments import compare, table_format
from monai_meep.handlers import ReliabilityDiagramSaver
from monai_meep.metrics import STATE_FILE, CalibrationHistogram, calibration_error_from_histogram


class _Engine:
    class state:
        epoch = 1


def _eval_dir(path, seed):
    """What evaluate.json writes for the pooled foreground bins: reliability.csv and calibration_state.pt."""
    g = torch.Generator().manual_seed(seed)
    fg = torch.rand(2, 1, 12, 10, 6, generator=g) ** (1 + seed)
    y = (torch.rand(2, 1, 12, 10, 6, generator=g) < fg).long()
    saver = ReliabilityDiagramSaver(path)
    saver.histogram.update(fg, y)
    saver.write(_Engine)
    return path, (fg, y)


def test_pooled_curve_from_states_equals_all_voxels_and_csv_fallback(tmp_path):
    dirs, data = zip(*(_eval_dir(tmp_path / f"seed{s}", s) for s in range(3)), strict=True)
    everything = CalibrationHistogram(2)
    for fg, y in data:
        everything.update(fg, y)
    exact = table_format.pooled_curve(dirs)
    assert torch.equal(exact.counts, everything.bin_statistics(10)[0][1:])
    assert float(exact.ece[0]) == pytest.approx(float(calibration_error_from_histogram(everything, 10)[0]), rel=1e-12)
    # the same folders without their state files (as committed results/ and older runs): the CSV path, same bins
    old = []
    for d in dirs:
        o = tmp_path / "old" / d.name
        shutil.copytree(d, o)
        (o / STATE_FILE).unlink()
        old.append(o)
    assert table_format.pooled_histogram(old) is None
    from_csv = table_format.pooled_curve(old)
    assert torch.equal(from_csv.counts, exact.counts)
    torch.testing.assert_close(from_csv.confidence, exact.confidence, rtol=1e-12, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(from_csv.frequency, exact.frequency, rtol=1e-12, atol=1e-12, equal_nan=True)
    # one folder without a state: every folder is read from its CSV (no mixing of exact and rounded bins)
    assert table_format.pooled_histogram([dirs[0], old[1]]) is None


def test_figures_from_states_and_from_csv(tmp_path):
    pytest.importorskip("matplotlib")
    dirs = [_eval_dir(tmp_path / f"seed{s}", s)[0] for s in range(2)]
    assert len(table_format.plot_rows(tmp_path / "fig", {"Dice": dirs}, "LA")) == 2
    assert len(compare._plot(tmp_path, {"dice": dirs[0], "kl": dirs[1]})) == 2
    (dirs[1] / STATE_FILE).unlink()
    assert len(compare._plot(tmp_path, {"dice": dirs[0], "kl": dirs[1]})) == 2
