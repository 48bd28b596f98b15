"""The calibration state file: round trip, exact pooling from saved states equals pooling the raw voxels, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_meep.metrics import (
    CalibrationHistogram,
    calibration_error_from_histogram,
    load_calibration_state,
    save_calibration_state,
)
from monai_meep.metrics.calibration_state import FORMAT_NAME, FORMAT_VERSION, _digest


def _runs(n_runs=3, shape=(2, 1, 9, 8, 7)):
    g = torch.Generator().manual_seed(11)
    out = []
    for r in range(n_runs):
        fg = torch.rand(*shape, generator=g, dtype=torch.float64) ** (1 + r)
        y = (torch.rand(*shape, generator=g, dtype=torch.float64) < fg.sqrt()).long()
        out.append((fg.float(), y))
    return out


def _hist(fg, y):
    return CalibrationHistogram(2).update(fg, y)


def test_round_trip_is_exact_and_keeps_meta(tmp_path):
    fg, y = _runs(1)[0]
    h = _hist(fg, y)
    path = save_calibration_state(tmp_path / "s.pt", h, {"epoch": 3, "region": None, "classes": [1]})
    back, meta = load_calibration_state(path, with_meta=True)
    a, b = h.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k], k
    assert meta == {"epoch": 3, "region": None, "classes": [1]}
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT_NAME and raw["version"] == FORMAT_VERSION == 1


def test_pooling_saved_states_equals_pooling_raw_voxels(tmp_path):
    runs = _runs(3)
    paths = [save_calibration_state(tmp_path / f"run{i}.pt", _hist(fg, y)) for i, (fg, y) in enumerate(runs)]
    pooled = load_calibration_state(paths[0])
    for p in paths[1:]:
        pooled.merge(load_calibration_state(p))
    # float64 recomputation from every voxel of every run
    p = np.concatenate([fg.double().numpy().ravel() for fg, _ in runs])
    t = np.concatenate([y.numpy().ravel() for _, y in runs]).astype(np.float64)
    bins = np.minimum((p * 15).astype(np.int64), 14)
    n = np.bincount(bins, minlength=15)
    conf = np.bincount(bins, weights=p, minlength=15)
    hits = np.bincount(bins, weights=t, minlength=15)
    ece = np.sum(np.abs(conf - hits)) / p.size
    assert int(pooled.num_voxels) == p.size
    cnt, hit, sm, _, _ = pooled.bin_statistics(15)
    np.testing.assert_array_equal(cnt[1].numpy(), n)  # counts exact
    np.testing.assert_array_equal(hit[1].numpy(), hits.astype(np.int64))
    np.testing.assert_allclose(sm[1].numpy(), conf, rtol=1e-13)
    got = float(calibration_error_from_histogram(pooled, 15)[0])
    assert got == pytest.approx(ece, rel=1e-12, abs=1e-15)
    brier = np.mean((p - t) ** 2)
    assert float(pooled.brier_sums[1] / pooled.num_voxels) == pytest.approx(brier, rel=1e-12)
    # and the same as one histogram over all runs at once, bit for bit in the counts
    once = CalibrationHistogram(2)
    for fg, y in runs:
        once.update(fg, y)
    assert torch.equal(once.counts, pooled.counts) and torch.equal(once.positives, pooled.positives)


def test_refuses_edited_damaged_and_foreign_files(tmp_path):
    h = _hist(*_runs(1)[0])
    path = tmp_path / "s.pt"
    save_calibration_state(path, h)
    good = torch.load(path, weights_only=True)

    def write(payload, name):
        p = tmp_path / name
        torch.save(payload, p)
        return p

    edited = {**good, "histogram": {**good["histogram"], "counts": good["histogram"]["counts"].clone()}}
    edited["histogram"]["counts"][1, 5] += 1  # a hand edit: digest no longer matches
    with pytest.raises(ValueError, match=r"edited.*sha256|sha256.*edited|does not match its sha256"):
        load_calibration_state(write(edited, "edited.pt"))
    # an edit with a recomputed digest that no update can produce: refused by the histogram's checks
    bad = {**good, "histogram": {**good["histogram"], "positives": good["histogram"]["counts"] + 1}}
    bad["sha256"] = _digest(bad["histogram"])
    with pytest.raises(ValueError, match=r"bad\.pt.*positives"):
        load_calibration_state(write(bad, "bad.pt"))
    with pytest.raises(ValueError, match="version 2"):
        load_calibration_state(write({**good, "version": 2}, "v2.pt"))
    with pytest.raises(ValueError, match="not a calibration state file"):
        load_calibration_state(write(h.state_dict(), "plain_state_dict.pt"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"truncated\.pt is not a readable"):
        load_calibration_state(truncated)
    with pytest.raises(FileNotFoundError):
        load_calibration_state(tmp_path / "missing.pt")
    with pytest.raises(TypeError):
        save_calibration_state(tmp_path / "x.pt", h.state_dict())
