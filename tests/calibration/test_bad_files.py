"""Calibrator files edited by hand or cut short: every absurd parameter is refused at load, naming the file and the
key, before the calibrator changes; a killed save's temporary file is cleaned on the next save (issue 14)."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from monai_meep.calibration import IsotonicCalibration, PlattScaling, TemperatureScaling, load_calibrator


@pytest.fixture
def xy(binary_data):
    logits, y, _ = binary_data(4000, seed=0, sharpen=2.0, shift=0.3)
    return logits, y


def _saved(tmp_path, cls, edit, xy):
    path = cls(2).update(*xy).fit().save(tmp_path / f"{cls.kind}.json")
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    return path


def _set(key, value):
    def edit(state):
        state["params"][key] = value

    return edit


PLATT_BAD = [
    ("a", [float("nan")], "finite"),
    ("a", [float("inf")], "finite"),
    ("a", [1e308], "must lie in"),
    ("b", [-1e300], "must lie in"),
    ("a", [-0.5], "reverses the ranking"),
    ("a", ["1.0"], "number"),
]


@pytest.mark.parametrize("key, value, message", PLATT_BAD)
def test_platt_absurd_parameters_refused(tmp_path, xy, key, value, message):
    path = _saved(tmp_path, PlattScaling, _set(key, value), xy)
    with pytest.raises((ValueError, TypeError), match=message) as info:
        load_calibrator(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


@pytest.mark.parametrize(
    "value, message",
    [
        (1e-300, "must lie in"),
        (0.0, "must lie in"),
        (-1.0, "must lie in"),
        (float("nan"), "finite"),
        (1e300, "must lie in"),
        ("2", "number"),
    ],
)
def test_temperature_absurd_refused(tmp_path, xy, value, message):
    path = _saved(tmp_path, TemperatureScaling, _set("temperature", value), xy)
    with pytest.raises((ValueError, TypeError), match=message) as info:
        load_calibrator(path)
    assert str(path) in str(info.value) and "temperature" in str(info.value)


ISO_BAD = [
    ("x", lambda x: [[-0.5] + x[0][1:]], r"\[0, 1\]"),
    ("x", lambda x: [x[0][:-1] + [1.5]], r"\[0, 1\]"),
    ("x", lambda x: [x[0][::-1]], "increasing"),
    ("y", lambda y: [[2.0] * len(y[0])], r"\[0, 1\]"),
    ("y", lambda y: [y[0][::-1]], "non-decreasing"),
    ("y", lambda y: [[float("nan")] * len(y[0])], "finite|NaN"),
]


@pytest.mark.parametrize("key, change, message", ISO_BAD)
def test_isotonic_bad_points_refused(tmp_path, xy, key, change, message):
    def edit(state):
        state["params"][key] = change(state["params"][key])

    path = _saved(tmp_path, IsotonicCalibration, edit, xy)
    with pytest.raises(ValueError, match=message) as info:
        load_calibrator(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_classes", "2"),
        ("num_classes", 2.0),
        ("num_classes", True),
        ("activation", 1),
        ("params", [1.0]),
        ("config", "x"),
    ],
)
def test_header_types_refused(tmp_path, xy, key, value):
    path = _saved(tmp_path, PlattScaling, lambda s: s.update({key: value}), xy)
    with pytest.raises(TypeError, match=f"'{key}'") as info:
        load_calibrator(path)
    assert str(path) in str(info.value)
    with pytest.raises(TypeError, match=f"'{key}'"):
        load_calibrator(path, num_classes=2)


def test_rejected_state_leaves_calibrator_unchanged(xy):
    x, y = xy
    for cls, key, value in [
        (PlattScaling, "a", [float("nan")]),
        (TemperatureScaling, "temperature", 0.0),
        (IsotonicCalibration, "y", [[3.0]]),
    ]:
        cal = cls(2).update(x, y).fit()
        before = cal(x)
        state = cal.state_dict()
        state["params"][key] = value
        state["fit_info"] = {"edited": True}
        with pytest.raises(ValueError):
            cal.load_state_dict(state)
        torch.testing.assert_close(cal(x), before, rtol=0, atol=0)
        assert cal.fit_info != {"edited": True}


def test_killed_save_tmp_cleaned_on_next_save(tmp_path, xy):
    cal = PlattScaling(2).update(*xy).fit()
    stale = tmp_path / ".cal.json.k1ll3d.tmp"  # what atomic_open leaves when the process is killed mid-write
    stale.write_text('{"format": "monai_meep.calib')
    old = time.time() - 60
    os.utime(stale, (old, old))
    other = tmp_path / ".notes.txt.abc.tmp"  # another file's temporary: not ours to remove
    other.write_text("x")
    os.utime(other, (old, old))
    cal.save(tmp_path / "cal.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt.abc.tmp", "cal.json"]
    assert load_calibrator(tmp_path / "cal.json").fitted
