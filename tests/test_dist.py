"""monai_meep.dist: the one collective-device rule and the in-place all-reduce (2-rank runs: the DDP tests of the
histogram, the metrics, the calibrators and the reliability saver)."""

from __future__ import annotations

import torch

from monai_meep import dist as mdist


def test_without_a_process_group_nothing_is_reduced():
    assert not mdist.is_distributed() and mdist.get_rank() == 0
    t = torch.arange(5)
    assert mdist.all_reduce_(t) is t and t.tolist() == [0, 1, 2, 3, 4]


def test_collective_device_rule(monkeypatch):
    monkeypatch.setattr(mdist.torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(mdist.dist, "get_backend", lambda group=None: "nccl")
    assert mdist.collective_device("cpu") == torch.device("cuda", 3)  # NCCL reduces CUDA tensors only
    assert mdist.collective_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    monkeypatch.setattr(mdist.dist, "get_backend", lambda group=None: "gloo")
    assert mdist.collective_device("cpu") == torch.device("cpu")


def test_all_reduce_goes_through_the_collective_device_and_back(monkeypatch):
    calls = []

    def fake_all_reduce(t, op=None, group=None):
        calls.append((t.device, op, group, t.is_contiguous()))
        t.mul_(2)  # two ranks holding the same values

    monkeypatch.setattr(mdist, "is_distributed", lambda group=None: True)
    monkeypatch.setattr(mdist.dist, "all_reduce", fake_all_reduce)
    t = torch.arange(6, dtype=torch.int64).view(2, 3).t()  # not contiguous: reduced on a contiguous copy
    monkeypatch.setattr(mdist, "collective_device", lambda device, group=None: device)
    out = mdist.all_reduce_(t, op="max", group="g")
    assert out is t and t.tolist() == [[0, 6], [2, 8], [4, 10]]
    assert calls == [(torch.device("cpu"), "max", "g", True)]
