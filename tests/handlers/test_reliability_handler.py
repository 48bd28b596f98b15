"""ReliabilityDiagramSaver inside Ignite / MONAI evaluators: files, bin table vs float64 NumPy, masks, TensorBoard."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine

from monai_meep.handlers.reliability import ReliabilityDiagramSaver
from monai_meep.metrics import reliability_curve

FILES = {"reliability.png", "probability_histogram.png", "reliability.csv"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class StubWriter:
    """Records ``add_figure`` calls (the TensorBoard API boundary) and accepts any other writer call."""

    def __init__(self):
        self.figures = []
        self.other = []

    def add_figure(self, tag, figure, global_step=None, close=True):
        self.figures.append((tag, figure, global_step))

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.other.append(name)

        return record


def _batches(n_batches=3, b=2, shape=(6, 5, 4), seed=0, with_ignore=False):
    """Over-confident binary predictions (2-channel softmax) and labels; label 2 sprinkled when ``with_ignore``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        p = torch.rand(b, 1, *shape, generator=g)
        y = (torch.rand(b, 1, *shape, generator=g) < p**2).long()
        if with_ignore:
            y[torch.rand(b, 1, *shape, generator=g) < 0.2] = 2
        mask = torch.rand(b, 1, *shape, generator=g) < 0.6
        out.append({"prob": torch.cat([1 - p, p], 1), "label": y, "mask": mask})
    return out


def _numpy_table(batches, nb=10, use_mask=False, ignore_index=None):
    """float64 NumPy recomputation of the foreground bin table over every batch."""
    p = np.concatenate([bt["prob"][:, 1].numpy().ravel() for bt in batches]).astype(np.float64)
    y = np.concatenate([bt["label"][:, 0].numpy().ravel() for bt in batches])
    keep = np.ones_like(p, dtype=bool)
    if use_mask:
        keep &= np.concatenate([bt["mask"][:, 0].numpy().ravel() for bt in batches])
    if ignore_index is not None:
        keep &= y != ignore_index
    p, y = p[keep], y[keep]
    b = np.minimum(np.floor(p * nb).astype(int), nb - 1)
    cnt = np.bincount(b, minlength=nb)
    conf = np.bincount(b, p, nb) / np.maximum(cnt, 1)
    freq = np.bincount(b, (y == 1).astype(float), nb) / np.maximum(cnt, 1)
    b15 = np.minimum(np.floor(p * 15).astype(int), 14)
    c15 = np.bincount(b15, minlength=15)
    ece15 = np.abs(np.bincount(b15, p, 15) - np.bincount(b15, (y == 1).astype(float), 15)).sum() / c15.sum()
    return cnt, conf, freq, ece15


def _run(batches, saver, epochs=1):
    engine = Engine(lambda e, batch: batch)
    saver.attach(engine)
    engine.run(batches, max_epochs=epochs)
    return engine


def _assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_writes_all_files_and_table_matches_numpy(tmp_path):
    batches = _batches()
    writer = StubWriter()
    saver = ReliabilityDiagramSaver(tmp_path, summary_writer=writer)
    _run(batches, saver)
    assert FILES <= set(os.listdir(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]
    _assert_png(tmp_path / "reliability.png")
    _assert_png(tmp_path / "probability_histogram.png")
    table = pd.read_csv(tmp_path / "reliability.csv")
    cnt, conf, freq, ece15 = _numpy_table(batches)
    assert table["class"].tolist() == [1] * 10 and table["epoch"].tolist() == [1] * 10
    np.testing.assert_array_equal(table["count"], cnt)
    np.testing.assert_allclose(table["confidence"], conf, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["frequency"], freq, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["ece"], ece15, rtol=0, atol=1e-12)
    # and the same as the functional reliability_curve on all the data at once
    probs = torch.cat([bt["prob"] for bt in batches])
    labels = torch.cat([bt["label"] for bt in batches])
    curve = reliability_curve(probs, labels, num_bins=10)
    np.testing.assert_array_equal(table["count"], curve.counts[0].numpy())
    np.testing.assert_allclose(table["frequency"], curve.frequency[0].numpy(), atol=1e-12)
    # TensorBoard received both figures at the epoch as global step
    tags = [t for t, _, _ in writer.figures]
    assert tags == ["reliability/reliability_diagram", "reliability/probability_histogram"]
    assert all(step == 1 for _, _, step in writer.figures)
    fig = writer.figures[0][1]
    heights = [p.get_height() for c in fig.axes[0].containers if c.get_label() == "Observed frequency" for p in c]
    np.testing.assert_allclose(heights, freq, atol=1e-12)
    assert f"{ece15:.4f}" in fig.axes[0].get_title()


def test_mask_and_ignore_index(tmp_path):
    batches = _batches(with_ignore=True, seed=1)
    saver = ReliabilityDiagramSaver(tmp_path, mask_key="mask", ignore_index=2)
    _run(batches, saver)
    table = pd.read_csv(tmp_path / "reliability.csv")
    cnt, conf, freq, _ = _numpy_table(batches, use_mask=True, ignore_index=2)
    np.testing.assert_array_equal(table["count"], cnt)
    np.testing.assert_allclose(table["frequency"], freq, atol=1e-12)
    full, _, _, _ = _numpy_table(batches, ignore_index=2)
    assert cnt.sum() < full.sum()  # the mask removed voxels


def test_output_transform_with_mask_and_epochs_reset(tmp_path):
    batches = _batches(seed=2)
    saver = ReliabilityDiagramSaver(
        tmp_path, output_transform=lambda o: (o["prob"][:, 1:], o["label"], o["mask"]), num_bins=5, ece_bins=15
    )
    _run(batches, saver, epochs=2)
    table = pd.read_csv(tmp_path / "reliability.csv")
    cnt, _, freq, _ = _numpy_table(batches, nb=5, use_mask=True)
    assert table["epoch"].unique().tolist() == [2]
    np.testing.assert_array_equal(table["count"], cnt)  # reset each epoch: not doubled
    np.testing.assert_allclose(table["frequency"], freq, atol=1e-12)


def test_decollated_list_output_with_different_sizes(tmp_path):
    g = torch.Generator().manual_seed(4)
    items = []
    for shape in [(5, 4, 3), (7, 2, 3)]:
        p = torch.rand(1, *shape, generator=g)
        items.append({"prob": torch.cat([1 - p, p]), "label": (torch.rand(1, *shape, generator=g) < p).long()})
    saver = ReliabilityDiagramSaver(tmp_path)
    _run([items], saver)
    table = pd.read_csv(tmp_path / "reliability.csv")
    assert table["count"].sum() == 5 * 4 * 3 + 7 * 2 * 3


def test_multiclass_marginal_and_top_label(tmp_path):
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(2, 3, 6, 6, generator=g) * 2, dim=1)
    labels = torch.randint(0, 3, (2, 1, 6, 6), generator=g)
    saver = ReliabilityDiagramSaver(tmp_path / "m", num_classes=3)
    _run([{"prob": probs, "label": labels}], saver)
    table = pd.read_csv(tmp_path / "m" / "reliability.csv")
    assert sorted(table["class"].unique().tolist()) == [1, 2]
    for c in (1, 2):
        rows = table[table["class"] == c]
        p, y = probs[:, c].numpy().ravel().astype(np.float64), (labels[:, 0] == c).numpy().ravel()
        b = np.minimum(np.floor(p * 10).astype(int), 9)
        np.testing.assert_array_equal(rows["count"], np.bincount(b, minlength=10))
        cnt = np.bincount(b, minlength=10)
        freq = np.bincount(b, y.astype(float), 10) / np.maximum(cnt, 1)
        np.testing.assert_allclose(rows["frequency"].fillna(0), freq, atol=1e-12)
    saver = ReliabilityDiagramSaver(tmp_path / "t", num_classes=3, mode="top_label")
    _run([{"prob": probs, "label": labels}], saver)
    table = pd.read_csv(tmp_path / "t" / "reliability.csv")
    conf = probs.max(1).values.numpy().ravel().astype(np.float64)
    correct = (probs.argmax(1) == labels[:, 0]).numpy().ravel()
    b = np.minimum(np.floor(conf * 10).astype(int), 9)
    cnt = np.bincount(b, minlength=10)
    np.testing.assert_array_equal(table["count"], cnt)
    np.testing.assert_allclose(
        table["frequency"].fillna(0), np.bincount(b, correct, 10) / np.maximum(cnt, 1), atol=1e-12
    )


def test_supervised_evaluator_with_tiny_network_and_shared_writer(tmp_path):
    """One SummaryWriter passed to MONAI's TensorBoardStatsHandler and to the saver: both write to it."""
    from monai.engines import SupervisedEvaluator
    from monai.handlers import TensorBoardStatsHandler
    from monai.transforms import Activationsd, AsDiscreted, Compose, CopyItemsd

    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, kernel_size=3, padding=1)
    g = torch.Generator().manual_seed(6)
    data = [
        {"image": torch.randn(2, 1, 8, 8, 8, generator=g), "label": torch.randint(0, 2, (2, 1, 8, 8, 8), generator=g)}
        for _ in range(2)
    ]
    post = Compose(
        [
            Activationsd(keys="pred", softmax=True),
            CopyItemsd(keys="pred", names="prob"),
            AsDiscreted(keys="pred", argmax=True),
        ]
    )
    writer = StubWriter()
    saver = ReliabilityDiagramSaver(tmp_path, summary_writer=writer)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=data,
        network=net,
        postprocessing=post,
        val_handlers=[TensorBoardStatsHandler(summary_writer=writer, output_transform=lambda x: None), saver],
    )
    evaluator.run()
    assert FILES <= set(os.listdir(tmp_path))
    assert [t for t, _, _ in writer.figures] == ["reliability/reliability_diagram", "reliability/probability_histogram"]
    with torch.no_grad():
        probs = torch.cat([torch.softmax(net(d["image"]), 1) for d in data])
    labels = torch.cat([d["label"] for d in data])
    curve = reliability_curve(probs, labels, num_bins=10)
    table = pd.read_csv(tmp_path / "reliability.csv")
    np.testing.assert_array_equal(table["count"], curve.counts[0].numpy())
    np.testing.assert_allclose(table["confidence"].fillna(-1), curve.confidence[0].nan_to_num(-1).numpy(), atol=1e-6)


def test_no_writer_is_looked_up_on_the_engine(tmp_path):
    """Without ``summary_writer`` nothing goes to TensorBoard, even with a TensorBoard handler on the engine."""
    from monai.handlers import TensorBoardStatsHandler

    writer = StubWriter()
    engine = Engine(lambda e, batch: batch)
    TensorBoardStatsHandler(summary_writer=writer, output_transform=lambda x: None).attach(engine)
    ReliabilityDiagramSaver(tmp_path).attach(engine)
    engine.run(_batches(n_batches=1), max_epochs=1)
    assert FILES <= set(os.listdir(tmp_path)) and writer.figures == []


def test_summary_writer_without_add_figure_is_refused(tmp_path):
    from monai.handlers import TensorBoardStatsHandler

    for wrong in (TensorBoardStatsHandler(summary_writer=StubWriter()), "runs/"):
        with pytest.raises(TypeError, match="summary_writer must be a SummaryWriter"):
            ReliabilityDiagramSaver(tmp_path, summary_writer=wrong)


def test_only_rank_zero_writes_after_all_reduce(tmp_path, monkeypatch):
    from monai_meep.handlers import reliability as mod

    calls = []
    saver = ReliabilityDiagramSaver(tmp_path / "r1")
    monkeypatch.setattr(saver.histogram, "all_reduce", lambda *a, **k: calls.append("all_reduce"))
    monkeypatch.setattr(mod.idist, "get_rank", lambda: 1)
    _run(_batches(n_batches=1), saver)
    assert calls == ["all_reduce"] and not (tmp_path / "r1").exists()


def test_empty_epoch_warns_and_writes_nothing(tmp_path):
    batches = _batches(n_batches=1)
    batches[0]["mask"][:] = False
    saver = ReliabilityDiagramSaver(tmp_path / "e", mask_key="mask")
    with pytest.warns(UserWarning, match="no voxel"):
        _run(batches, saver)
    assert not (tmp_path / "e").exists()


def test_bad_configuration_and_output():
    with pytest.raises(ValueError, match="mode"):
        ReliabilityDiagramSaver(mode="classwise")
    with pytest.raises(ValueError, match="classes"):
        ReliabilityDiagramSaver(num_classes=2, classes=[2])
    with pytest.raises(ValueError, match="multiple"):
        ReliabilityDiagramSaver(num_bins=7, num_sub_bins=30)
    saver = ReliabilityDiagramSaver()
    with pytest.raises(ValueError, match="'prob' is not in the engine output"):
        _run([{"pred": torch.rand(1, 2, 2, 2), "label": torch.zeros(1, 1, 2, 2)}], saver)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        saver = ReliabilityDiagramSaver(os.path.join(out_dir, f"rank{rank}"))
        _run(_batches(n_batches=4, seed=7)[rank::world], saver)  # each rank scores its half of the data
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    assert FILES <= set(os.listdir(tmp_path / "rank0"))
    assert not (tmp_path / "rank1").exists()  # only rank 0 writes
    table = pd.read_csv(tmp_path / "rank0" / "reliability.csv")
    cnt, conf, freq, ece15 = _numpy_table(_batches(n_batches=4, seed=7))
    np.testing.assert_array_equal(table["count"], cnt)  # the summed histogram covers both ranks' data
    np.testing.assert_allclose(table["confidence"], conf, atol=1e-12)
    np.testing.assert_allclose(table["frequency"], freq, atol=1e-12)
    np.testing.assert_allclose(table["ece"], ece15, atol=1e-12)


def test_title_names_what_the_figures_show(tmp_path):
    writer = StubWriter()
    _run(_batches(), ReliabilityDiagramSaver(tmp_path, summary_writer=writer, title="dice + meep_kl, test"))
    titles = [fig._suptitle.get_text() for _, fig, _ in writer.figures]
    assert titles == [
        "Reliability: dice + meep_kl, test (epoch 1)",
        "Predicted probabilities: dice + meep_kl, test (epoch 1)",
    ]
    writer = StubWriter()
    _run(_batches(), ReliabilityDiagramSaver(tmp_path / "plain", summary_writer=writer))
    assert writer.figures[0][1]._suptitle.get_text() == "Reliability (epoch 1)"


def test_region_column_names_the_scored_region(tmp_path):
    _run(_batches(), ReliabilityDiagramSaver(tmp_path / "crop", region="heart-centred crop 48x48x32 voxels"))
    table = pd.read_csv(tmp_path / "crop" / "reliability.csv")
    assert table["region"].tolist() == ["heart-centred crop 48x48x32 voxels"] * 10
    _run(_batches(), ReliabilityDiagramSaver(tmp_path / "none"))
    assert "region" not in pd.read_csv(tmp_path / "none" / "reliability.csv").columns
