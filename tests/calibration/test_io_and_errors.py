"""save / load round trips, state_dict, and the clear errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch

from monai_meep.calibration import (
    Calibrator,
    CalibratorNotFittedError,
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    load_calibrator,
)

KINDS = [PlattScaling, IsotonicCalibration, TemperatureScaling]
LAYOUTS = [(2, "softmax"), (3, "softmax"), (1, "sigmoid"), (2, "sigmoid")]


def _data(num_classes, activation, seed=0, n=4000):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, num_classes, n // 40, 20, generator=g) * 3
    if activation == "softmax":
        y = torch.multinomial(torch.softmax(x / 3, 1).movedim(1, -1).reshape(-1, num_classes), 1, generator=g)
        y = y.reshape(2, n // 40, 20).unsqueeze(1)
    else:
        y = (torch.rand(x.shape, generator=g) < torch.sigmoid(x / 3)).long()
    return x, y


@pytest.mark.parametrize("cls", KINDS)
@pytest.mark.parametrize("num_classes,activation", LAYOUTS)
def test_save_load_round_trip(tmp_path, cls, num_classes, activation):
    x, y = _data(num_classes, activation)
    cal = cls(num_classes, activation=activation).update(x, y).fit()
    path = cal.save(tmp_path / "models" / "cal.json")
    assert [p.name for p in path.parent.iterdir()] == ["cal.json"]  # the temporary file was renamed away
    state = json.loads(path.read_text())
    assert state["format_version"] == 1 and state["kind"] == cls.kind
    assert state["num_classes"] == num_classes and state["activation"] == activation
    loaded = load_calibrator(path)
    assert type(loaded) is cls and loaded.fitted
    torch.testing.assert_close(loaded(x), cal(x), atol=0, rtol=0)
    out = loaded(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    if activation == "softmax":
        torch.testing.assert_close(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-6, rtol=0)
    again = cls(num_classes, activation=activation).load_state_dict(cal.state_dict())
    torch.testing.assert_close(again(x), out, atol=0, rtol=0)
    assert cls.load(path).fitted


def _saved(tmp_path, **changes):
    x, y = _data(2, "softmax")
    path = PlattScaling(2).update(x, y).fit().save(tmp_path / "p.json")
    state = json.loads(path.read_text())
    state.update(changes)
    path.write_text(json.dumps(state))
    return path


def test_load_rejects_other_version_count_kind(tmp_path):
    with pytest.raises(ValueError, match="format_version 2"):
        load_calibrator(_saved(tmp_path, format_version=2))
    with pytest.raises(ValueError, match="fitted for 2 classes, expected 3"):
        load_calibrator(_saved(tmp_path), num_classes=3)
    with pytest.raises(ValueError, match="num_classes=2 but this one has num_classes=3"):
        PlattScaling(3).load_state_dict(json.loads(_saved(tmp_path).read_text()))
    with pytest.raises(ValueError, match="holds a 'platt' calibrator, not 'isotonic'"):
        IsotonicCalibration.load(_saved(tmp_path))
    with pytest.raises(ValueError, match="no calibrator file"):
        load_calibrator(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        load_calibrator(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not a monai_meep calibrator"):
        load_calibrator(_saved(tmp_path, format="other"))
    with pytest.raises(ValueError, match="Platt parameters"):
        load_calibrator(_saved(tmp_path, params={"a": [1.0, 2.0], "b": [0.0]}))


@pytest.mark.parametrize("cls", KINDS)
def test_errors(cls):
    cal = cls(2)
    x, y = _data(2, "softmax")
    with pytest.raises(CalibratorNotFittedError, match="not fitted"):
        cal(x)
    with pytest.raises(ValueError, match="no voxels"):
        cal.fit()
    with pytest.raises(ValueError, match="only one class|only class"):
        cls(2).update(x, torch.zeros_like(y)).fit()
    with pytest.raises(ValueError, match="only one class|only class"):
        cls(2).update(x, torch.ones_like(y)).fit()
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        cal.update(bad, y)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        cal.update(bad, y)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 2"):
        cal.update(x[:, :1], y)
    with pytest.raises(ValueError, match="target must be"):
        cal.update(x, y[..., :5])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        cal.update(x, y + 1)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        cal.update(x, y, input_type="probs")
    with pytest.raises(ValueError, match="mask must be"):
        cal.update(x, y, mask=torch.ones(2, 2, 100, 20, dtype=torch.bool))
    fitted = cls(2).update(x, y).fit()
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 2"):
        fitted(torch.randn(1, 3, 4, 4))
    with pytest.raises(CalibratorNotFittedError):
        cls(2).save("never.json")


def test_constructor_errors():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        PlattScaling(1)
    with pytest.raises(ValueError, match="activation: Unsupported option"):
        PlattScaling(2, activation="relu")
    with pytest.raises(ValueError, match="input_type: Unsupported option"):
        TemperatureScaling(2, input_type="scores")
    with pytest.raises(ValueError, match="sigmoid targets need"):
        PlattScaling(2, activation="sigmoid").update(torch.randn(1, 2, 4), torch.zeros(1, 1, 4))
    assert issubclass(CalibratorNotFittedError, ValueError)
    assert set(Calibrator._registry) == {"platt", "isotonic", "temperature"}


def test_one_hot_targets_equal_index_targets():
    x, y = _data(3, "softmax")
    onehot = torch.nn.functional.one_hot(y[:, 0], 3).movedim(-1, 1)
    a = PlattScaling(3).update(x, y).fit()
    b = PlattScaling(3).update(x, onehot).fit()
    assert a.a == b.a and a.b == b.b


@pytest.mark.parametrize("cls", KINDS)
def test_half_precision_inputs(cls):
    x, y = _data(2, "softmax", seed=3)
    full = cls(2).update(x.half().float(), y).fit()  # the same (rounded) values in float32
    half = cls(2).update(x.half(), y).fit()
    out = half(x.half())
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, full(x.half().float()), atol=1e-6, rtol=0)
