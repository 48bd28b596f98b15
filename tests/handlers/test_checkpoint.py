"""SafeCheckpointSaver: a kill at any step of a save leaves a loadable checkpoint, and a rerun resumes from it."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from monai_meep.handlers import SafeCheckpointSaver
from monai_meep.handlers.checkpoint import find_checkpoints, read_best_metric


class _Killed(BaseException):
    """Stands for a ``kill -9``: not an ``Exception``, so no handler of Ignite or MONAI swallows it."""


def _engine(net: torch.nn.Module, opt: torch.optim.Optimizer) -> Engine:
    def step(engine, batch):
        opt.zero_grad()
        loss = net(torch.ones(1, 2)).sum()
        loss.backward()
        opt.step()
        return loss.item()

    engine = Engine(step)

    @engine.on(Events.EPOCH_COMPLETED)
    def _metric(e):  # a key metric that improves every epoch
        e.state.metrics["acc"] = float(e.state.epoch)

    return engine


def _train(ckpt_dir, max_epochs: int, net=None) -> tuple[Engine, torch.nn.Module]:
    """One training run with an interval saver (``last_*``) and a best-metric saver (``model.pt``), resuming."""
    net = net or torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = _engine(net, opt)
    last = find_checkpoints(ckpt_dir)
    if last:
        CheckpointLoader(last[-1][1], {"model": net, "optimizer": opt, "trainer": engine}).attach(engine)
    SafeCheckpointSaver(
        str(ckpt_dir),
        {"model": net, "optimizer": opt, "trainer": engine},
        file_prefix="last",
        save_interval=1,
        n_saved=1,
    ).attach(engine)
    SafeCheckpointSaver(
        str(ckpt_dir), {"model": net}, save_key_metric=True, key_metric_name="acc", key_metric_filename="model.pt"
    ).attach(engine)
    engine.run(range(2), max_epochs=max_epochs)
    return engine, net


def _steps(monkeypatch, kill_at: int | None) -> list[str]:
    """Count (and at ``kill_at`` interrupt) the file-system steps of a save: write, fsync, rename, remove."""
    calls: list[str] = []

    def wrap(owner, name):
        original = getattr(owner, name)

        def f(*args, **kwargs):
            calls.append(name)
            if kill_at is not None and len(calls) == kill_at:
                raise _Killed(f"killed at step {kill_at} ({name})")
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, f)

    wrap(torch, "save")
    for name in ("fsync", "replace", "unlink"):
        wrap(os, name)
    return calls


def test_plain_state_dict_best_metric_and_no_pile_up(tmp_path):
    _train(tmp_path, 2)
    assert [os.path.basename(p) for _, p in find_checkpoints(tmp_path)] == ["last_checkpoint_epoch=2.pt"]
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(model) == {"weight", "bias"}, "model.pt is a plain state_dict"
    torch.nn.Linear(2, 2).load_state_dict(model)
    record = read_best_metric(tmp_path / "best_metric.json")
    previous = record.pop("previous")
    sha = hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()
    assert record == {"metric": "acc", "value": 2.0, "priority": 2.0, "epoch": 2, "filename": "model.pt", "sha256": sha}
    assert {k: previous[k] for k in ("priority", "epoch", "filename")} == {
        "priority": 1.0,
        "epoch": 1,
        "filename": "model.pt",
    }


def test_key_metric_save_state_refused(tmp_path):
    with pytest.raises(ValueError, match="best_metric_file"):
        SafeCheckpointSaver(
            str(tmp_path), {"model": torch.nn.Linear(1, 1)}, save_key_metric=True, key_metric_save_state=True
        )


def test_kill_at_every_step_of_a_save_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    # how many file-system steps one epoch's saves take (interval + best model + best_metric.json)
    _train(tmp_path / "count", 1)
    with monkeypatch.context() as m:
        calls = _steps(m, None)
        _train(tmp_path / "count", 2)
    n = len(calls)
    assert n >= 8 and {"save", "fsync", "replace", "unlink"} <= set(calls), calls
    for k in range(1, n + 1):
        d = tmp_path / f"kill{k}"
        _train(d, 1)
        with monkeypatch.context() as m:
            _steps(m, k)
            with pytest.raises(_Killed):
                _train(d, 2)
        found = find_checkpoints(d)
        assert found, f"kill at step {k} ({calls[k - 1]}) left no last checkpoint"
        state = torch.load(found[-1][1], weights_only=True)["trainer"]
        epoch = state["iteration"] // state["epoch_length"]
        assert epoch in (1, 2), (k, epoch)
        torch.nn.Linear(2, 2).load_state_dict(torch.load(d / "model.pt", weights_only=True))
        # the rerun resumes from the loadable checkpoint (not from epoch 0) and leaves one checkpoint behind
        engine, _ = _train(d, 3)
        assert engine.state.epoch == 3
        resumed = [os.path.basename(p) for _, p in find_checkpoints(d)]
        assert resumed == ["last_checkpoint_epoch=3.pt"], (k, resumed)
        assert not list(d.glob(".*.tmp"))
        assert read_best_metric(d / "best_metric.json")["epoch"] == 3


def test_resume_removes_stale_files_and_keeps_best(tmp_path):
    _train(tmp_path, 2)
    # left-overs of earlier versions / killed saves
    (tmp_path / "last_checkpoint_epoch=1.pt").write_bytes((tmp_path / "last_checkpoint_epoch=2.pt").read_bytes())
    (tmp_path / ".last_checkpoint_epoch=3.pt.abc.tmp").write_bytes(b"partial")
    # a best score no later epoch reaches: the resumed run must not replace model.pt
    record = json.loads((tmp_path / "best_metric.json").read_text())
    (tmp_path / "best_metric.json").write_text(json.dumps({**record, "priority": 99.0, "value": 99.0}))
    before = (tmp_path / "model.pt").read_bytes()
    _train(tmp_path, 4)
    assert [os.path.basename(p) for _, p in find_checkpoints(tmp_path)] == ["last_checkpoint_epoch=4.pt"]
    assert not list(tmp_path.glob(".*.tmp"))
    assert (tmp_path / "model.pt").read_bytes() == before, "a worse validation after the resume replaced model.pt"
    assert read_best_metric(tmp_path / "best_metric.json")["priority"] == 99.0


def test_resume_reads_the_tracker_of_an_old_style_model_file(tmp_path):
    net = torch.nn.Linear(2, 2)
    torch.save({"model": net.state_dict(), "checkpointer": {"_saved": [(50.0, "model.pt")]}}, tmp_path / "model.pt")
    before = (tmp_path / "model.pt").read_bytes()
    _train(tmp_path, 3)
    assert (tmp_path / "model.pt").read_bytes() == before  # 1, 2, 3 < 50: the old best stays


def _train_tagged(ckpt_dir, max_epochs: int, **saver_kwargs) -> SafeCheckpointSaver:
    """A run whose best-model file records the epoch it was saved at (``tag``), the key metric being the epoch."""
    tag = torch.nn.Linear(1, 1, bias=False)
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _metric(e):  # before the saver's handler: the model saved at epoch N holds N
        e.state.metrics["acc"] = float(e.state.epoch)
        with torch.no_grad():
            tag.weight.fill_(float(e.state.epoch))

    saver = SafeCheckpointSaver(
        str(ckpt_dir), {"tag": tag}, save_key_metric=True, key_metric_name="acc", **saver_kwargs
    )
    saver.attach(engine)
    engine.run(range(1), max_epochs=max_epochs)
    return saver


def _restored_best(ckpt_dir, **saver_kwargs) -> tuple[float | None, str | None]:
    """What a fresh saver resumes from ``ckpt_dir``: (best priority, file name), ``(None, None)`` when nothing."""
    saver = SafeCheckpointSaver(str(ckpt_dir), {"tag": torch.nn.Linear(1, 1, bias=False)}, save_key_metric=True,
                                key_metric_name="acc", **saver_kwargs)  # fmt: skip
    saver.restore()
    saved = saver._key_metric_checkpoint._saved
    return (float(saved[-1].priority), saved[-1].filename) if saved else (None, None)


@pytest.mark.parametrize("fixed", ["model.pt", None], ids=["fixed_name", "generated_names"])
def test_kill_at_every_step_leaves_a_best_metric_state_that_describes_the_model_on_disk(tmp_path, monkeypatch, fixed):
    """A kill at any step of a new-best save (model file, best_metric.json, removal of the old file) leaves a
    best-metric record that a resume loads, naming a file that exists and holding that file's score: never no state
    (a record naming a removed file), never a stale score (a later, worse model would replace the better one)."""
    kwargs = {"key_metric_filename": fixed} if fixed else {}
    _train_tagged(tmp_path / "count", 1, **kwargs)
    with monkeypatch.context() as m:
        calls = _steps(m, None)
        _train_tagged(tmp_path / "count", 2, **kwargs)
    n = len(calls)
    assert {"save", "fsync", "replace"} <= set(calls), calls
    for k in range(1, n + 1):
        d = tmp_path / f"kill{k}"
        _train_tagged(d, 1, **kwargs)
        with monkeypatch.context() as m:
            _steps(m, k)
            with pytest.raises(_Killed):
                _train_tagged(d, 2, **kwargs)
        priority, name = _restored_best(d, **kwargs)
        assert priority is not None, f"kill at step {k} ({calls[k - 1]}) left no loadable best-metric state"
        held = float(torch.load(d / name, weights_only=True)["weight"])  # the epoch the file was saved at
        assert priority == held, f"kill at step {k} ({calls[k - 1]}): best {priority} but {name} holds epoch {held}"
        # the resumed run carries on from that state and ends consistent, without orphaned model files
        saver = _train_tagged(d, 3, **kwargs)
        record = read_best_metric(saver.best_metric_path)
        assert record["epoch"] == 3 and float(torch.load(d / record["filename"], weights_only=True)["weight"]) == 3
        assert sorted(p.name for p in d.glob("*.pt")) == [record["filename"]], (k, sorted(d.iterdir()))


def test_a_model_file_replaced_by_hand_keeps_the_recorded_score(tmp_path, caplog):
    _train_tagged(tmp_path, 2, key_metric_filename="model.pt")
    torch.save({"weight": torch.zeros(1, 1)}, tmp_path / "model.pt")  # neither the recorded model nor the previous
    with caplog.at_level("WARNING"):
        assert _restored_best(tmp_path, key_metric_filename="model.pt") == (2.0, "model.pt")
    assert "does not hold the model" in caplog.text
