"""Reliability diagrams and probability histograms: bars vs reliability_curve and float64 NumPy recomputations."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import torch

from monai_meep.metrics import CalibrationHistogram, reliability_curve
from monai_meep.visualize import (
    as_reliability_data,
    plot_probability_histogram,
    plot_reliability_diagram,
    save_figure,
)
from monai_meep.visualize import reliability as rel_module


def _data(seed: int, n: int = 4000, power: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(1, 1, n, generator=g, dtype=torch.float64).float()
    y = (torch.rand(1, 1, n, generator=g) < p.double() ** power).long()  # over-confident when power > 1
    return p, y


def _numpy_curve(p: np.ndarray, y: np.ndarray, nb: int):
    """float64 NumPy reference: bins [k/nb, (k+1)/nb), the last closed."""
    b = np.minimum(np.floor(p.astype(np.float64) * nb).astype(int), nb - 1)
    cnt = np.bincount(b, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(b, p.astype(np.float64), nb) / cnt
        freq = np.bincount(b, y.astype(np.float64), nb) / cnt
    return conf, freq, cnt


def _container(ax, label):
    found = [c for c in ax.containers if c.get_label() == label]
    assert len(found) == 1, [c.get_label() for c in ax.containers]
    return found[0]


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_bars_equal_reliability_curve_and_numpy(tmp_path):
    p, y = _data(0)
    curve = reliability_curve(p, y, num_bins=10)
    path = tmp_path / "rel.png"
    fig = plot_reliability_diagram(curve, save_path=path)
    ax = fig.axes[0]
    bars = _container(ax, "Observed frequency")
    heights = np.array([b.get_height() for b in bars.patches])
    freq = curve.frequency[0].numpy()
    nz = curve.counts[0].numpy() > 0
    np.testing.assert_allclose(heights[nz], freq[nz], rtol=0, atol=1e-12)
    assert np.all(heights[~nz] == 0)
    conf_np, freq_np, cnt_np = _numpy_curve(p.numpy().ravel(), y.numpy().ravel(), 10)
    np.testing.assert_array_equal(curve.counts[0].numpy(), cnt_np)
    np.testing.assert_allclose(heights[cnt_np > 0], freq_np[cnt_np > 0], atol=1e-12)
    # bars span their bins
    lefts = np.array([b.get_x() for b in bars.patches])
    widths = np.array([b.get_width() for b in bars.patches])
    np.testing.assert_allclose(lefts, np.arange(10) / 10, atol=1e-12)
    np.testing.assert_allclose(widths, 0.1, atol=1e-12)
    # the shaded gap runs from the bar top to the bin's mean confidence
    gap = _container(ax, "Gap")
    gh = np.array([b.get_height() for b in gap.patches])
    gy = np.array([b.get_y() for b in gap.patches])
    np.testing.assert_allclose(gh[nz], np.abs(conf_np - freq_np)[nz], atol=1e-12)
    np.testing.assert_allclose(gy[nz], np.minimum(conf_np, freq_np)[nz], atol=1e-12)
    # ECE of the plotted bins in the title, recomputed in NumPy
    ece_np = np.nansum(cnt_np * np.abs(conf_np - freq_np)) / cnt_np.sum()
    assert f"{ece_np:.4f}" in ax.get_title()
    assert ece_np > 0.05  # the data are over-confident: the gap is real, not a rounding artefact
    w, h = _png_size(path)
    assert w > 100 and h > 100


def test_empty_bins_have_zero_height_and_nan_data():
    p = torch.tensor([0.05, 0.07, 0.93, 0.95]).view(1, 1, 4)
    y = torch.tensor([0, 1, 1, 1]).view(1, 1, 4)
    curve = reliability_curve(p, y, num_bins=10)
    data = as_reliability_data(curve)
    assert np.isnan(data.frequency[1:9]).all() and data.count.tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    fig = plot_reliability_diagram(curve)
    heights = [b.get_height() for b in _container(fig.axes[0], "Observed frequency").patches]
    assert heights == pytest.approx([0.5, 0, 0, 0, 0, 0, 0, 0, 0, 1.0])
    # ECE by hand: bin 0: |0.06 - 0.5| * 2; bin 9: |0.94 - 1| * 2; over 4 voxels
    assert data.ece == pytest.approx((0.44 * 2 + 0.06 * 2) / 4, abs=1e-7)


def test_several_models_one_panel_each_with_given_ece(tmp_path):
    curves = {
        name: reliability_curve(*_data(i, power=pw), num_bins=10)
        for i, (name, pw) in enumerate([("Dice", 3.0), ("Dice+MEEP", 1.0)])
    }
    fig = plot_reliability_diagram(curves, ece={"Dice": 0.1234, "Dice+MEEP": 0.0042}, title="cmp")
    assert len(fig.axes) == 2
    for ax, (name, curve) in zip(fig.axes, curves.items(), strict=True):
        assert name in ax.get_title()
        heights = np.array([b.get_height() for b in _container(ax, "Observed frequency").patches])
        nz = curve.counts[0].numpy() > 0
        np.testing.assert_allclose(heights[nz], curve.frequency[0].numpy()[nz], atol=1e-12)
    assert "0.1234" in fig.axes[0].get_title() and "0.0042" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="no value for model"):
        plot_reliability_diagram(curves, ece={"Dice": 0.1})


def test_overlay_lines_follow_curves():
    curves = [reliability_curve(*_data(i), num_bins=5) for i in range(3)]
    fig = plot_reliability_diagram(curves, overlay=True)
    assert len(fig.axes) == 1
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("model")]
    assert len(lines) == 3
    for ln, c in zip(lines, curves, strict=True):
        np.testing.assert_allclose(ln.get_xdata(), c.confidence[0].numpy(), atol=1e-12)
        np.testing.assert_allclose(ln.get_ydata(), c.frequency[0].numpy(), atol=1e-12)


def test_multiclass_curve_selects_class_by_label():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(1, 3, 500, generator=g) * 2, dim=1)
    target = torch.randint(0, 3, (1, 1, 500), generator=g)
    curve = reliability_curve(probs, target, num_bins=10)  # rows: classes 1, 2 (background excluded)
    fig = plot_reliability_diagram(curve, class_index=2)
    heights = np.array([b.get_height() for b in _container(fig.axes[0], "Observed frequency").patches])
    p2, y2 = probs[0, 2].numpy(), (target[0, 0] == 2).numpy()
    _, freq_np, cnt_np = _numpy_curve(p2, y2, 10)
    np.testing.assert_allclose(heights[cnt_np > 0], freq_np[cnt_np > 0], atol=1e-12)
    with pytest.raises(ValueError, match="class_index"):
        plot_reliability_diagram(curve)
    with pytest.raises(ValueError, match="not in this curve's classes"):
        plot_reliability_diagram(curve, class_index=0)


def test_histogram_from_calibration_histogram_matches_numpy(tmp_path):
    h1, h2 = CalibrationHistogram(2), CalibrationHistogram(2)
    p1, y1 = _data(5)
    p2 = p1**4  # a second "model", mass pushed to 0
    h1.update(p1, y1)
    h2.update(p2, y1)
    path = tmp_path / "hist.png"
    fig = plot_probability_histogram({"A": h1, "B": h2}, num_bins=20, save_path=path)
    assert len(fig.axes) == 2
    for ax, p in zip(fig.axes, (p1, p2), strict=True):
        assert ax.get_yscale() == "log"
        heights = [b.get_height() for b in _container(ax, "Count").patches]
        expected = np.bincount(
            np.minimum(np.floor(p.numpy().ravel().astype(np.float64) * 20).astype(int), 19), minlength=20
        )
        np.testing.assert_array_equal(heights, expected)
    _png_size(path)


def test_histogram_from_raw_values_and_curves():
    p, y = _data(6, n=999)
    fig = plot_probability_histogram(p, num_bins=10)
    heights = [b.get_height() for b in _container(fig.axes[0], "Count").patches]
    np.testing.assert_array_equal(heights, np.histogram(p.numpy().astype(np.float64), bins=10, range=(0, 1))[0])
    curve = reliability_curve(p, y, num_bins=10)
    fig = plot_probability_histogram([curve, curve], overlay=True)
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"


def test_bad_inputs():
    with pytest.raises(ValueError, match="cannot read a reliability curve"):
        plot_reliability_diagram({"m": {"confidence": [0.5]}})
    with pytest.raises(ValueError, match="same shape"):
        plot_reliability_diagram(([0.1, 0.2], [0.1], [1, 1]))
    with pytest.raises(ValueError, match="non-negative"):
        plot_reliability_diagram(([0.1], [0.1], [-1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_probability_histogram(torch.tensor([0.2, 1.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_probability_histogram(np.array([0.2, np.nan]))
    with pytest.raises(ValueError, match="divide"):
        plot_probability_histogram(CalibrationHistogram(2, num_sub_bins=30), num_bins=7)
    with pytest.raises(ValueError, match="empty collection"):
        plot_reliability_diagram({})


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    from monai.utils import OptionalImportError

    monkeypatch.setattr(rel_module, "_has_mpl", False)
    with pytest.raises(OptionalImportError, match="matplotlib"):
        plot_reliability_diagram(([0.5], [0.5], [1]))


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "sub" / "fig.png"
    fig = plot_reliability_diagram(([0.5], [0.4], [3]))
    save_figure(fig, path)
    first = path.stat().st_size
    save_figure(plot_reliability_diagram(([0.25, 0.75], [0.2, 0.9], [3, 4])), path)
    assert os.listdir(path.parent) == ["fig.png"]  # no temporary left behind
    assert path.stat().st_size != first
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    _png_size(path)


def test_panels_wrap_into_rows_of_ncols():
    """13 models in rows of 6: three rows (6, 6, 1), 13 axes and no empty ones, each row labelled once."""
    from monai_meep.visualize import plot_probability_histogram

    curve = {
        "confidence": [0.1, 0.9],
        "frequency": [0.2, 0.8],
        "count": [5, 7],
        "bin_lower": [0.0, 0.5],
        "bin_upper": [0.5, 1.0],
    }
    fig = plot_reliability_diagram({f"m{i}": curve for i in range(13)}, ncols=6)
    assert len(fig.axes) == 13
    rows = sorted({ax.get_subplotspec().rowspan.start for ax in fig.axes})
    assert rows == [0, 1, 2] and [ax.get_subplotspec().colspan.start for ax in fig.axes[:7]] == [0, 1, 2, 3, 4, 5, 0]
    assert [ax.get_ylabel() for ax in fig.axes].count("Observed frequency") == 3
    assert all(ax.containers for ax in fig.axes)  # every panel drew its bars: no blank cell is left
    hist = plot_probability_histogram({f"m{i}": np.linspace(0, 1, 50) for i in range(7)}, ncols=6)
    assert len(hist.axes) == 7 and hist.get_size_inches()[1] == pytest.approx(2 * 3.0)
    # the default stays one row
    assert len({ax.get_subplotspec().rowspan.start for ax in plot_reliability_diagram([curve, curve]).axes}) == 1


def test_bin_counts_written_above_the_bars():
    p, y = _data(3, n=5000)
    curve = reliability_curve(p, y, num_bins=10)
    counts = as_reliability_data(curve).count
    texts = [t.get_text() for t in plot_reliability_diagram(curve).axes[0].texts]
    assert texts == [rel_module._short_count(int(n)) for n in counts if n > 0] and len(texts) == 10
    assert len(plot_reliability_diagram(curve, show_counts=False).axes[0].texts) == 0
    assert [rel_module._short_count(n) for n in (950, 12_345, 3_400_000, 12_000_000_000)] == [
        "950",
        "12k",
        "3.4M",
        "12G",
    ]
