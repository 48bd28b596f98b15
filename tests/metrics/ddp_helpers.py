"""DDP helpers for test_calibration.py, in their own module so spawned ranks import only torch and monai_meep."""

from __future__ import annotations

import os

import torch

from monai_meep.metrics import (
    BrierScoreMetric,
    CalibrationHistogram,
    CalibrationState,
    ExpectedCalibrationErrorMetric,
    NegativeLogLikelihoodMetric,
)


def ddp_data():
    g = torch.Generator().manual_seed(7)
    probs = torch.softmax(2 * torch.randn(4, 3, 10, 9, 8, generator=g), 1)
    target = torch.randint(0, 3, (4, 1, 10, 9, 8), generator=g)
    mask = torch.rand(4, 1, 10, 9, 8, generator=g) > 0.2
    return probs, target, mask


def ddp_metrics(state=None):
    return {
        "ece": ExpectedCalibrationErrorMetric(include_background=True, reduction="none", state=state),
        "top": ExpectedCalibrationErrorMetric(mode="top_label", binning="adaptive", reduction="none", state=state),
        "brier+": BrierScoreMetric(stratum="positive", reduction="none", state=state),
        "nll": NegativeLogLikelihoodMetric(reduction="none", state=state),
    }


def ddp_run(probs, target, mask, rank=0, world=1, shared=False):
    """Separate metrics, or (``shared``) metrics of one CalibrationState updated once per batch."""
    state = CalibrationState() if shared else None
    metrics, hist = ddp_metrics(state), CalibrationHistogram(3)
    for i in range(2 * rank, 2 * rank + 4 // world):  # rank r holds images 2r, 2r+1 (one at a time)
        batch = probs[i : i + 1], target[i : i + 1], mask[i : i + 1]
        hists = state.update(*batch) if shared else None
        for m in metrics.values():
            m.accumulate(hists) if shared else m(*batch[:2], mask=batch[2])
        hist.update(*batch[:2], mask=batch[2])
    out = {f"{k}/per_image": m.aggregate() for k, m in metrics.items()}
    out.update({f"{k}/pooled": m.aggregate(pooled=True) for k, m in metrics.items()})
    out.update(hist.all_reduce().state_dict())
    return out


def ddp_worker(rank, world, port, path, shared=False):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        out = ddp_run(*ddp_data(), rank=rank, world=world, shared=shared)
        torch.save(out, os.path.join(path, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def ddp_worker_shared(rank, world, port, path):
    ddp_worker(rank, world, port, path, shared=True)


def empty_rank_worker(rank, world, port, path):
    """Rank 1 sees no image: the pooled value must still reach both ranks (and equal rank 0's alone)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        probs, target, mask = ddp_data()
        metric = ExpectedCalibrationErrorMetric(include_background=True, reduction="none")
        if rank == 0:
            metric(probs, target, mask=mask)
        out = {"pooled": metric.aggregate(pooled=True)}
        nothing = ExpectedCalibrationErrorMetric()
        try:
            nothing.aggregate(pooled=True)
        except ValueError as e:  # no rank has data: every rank raises the same message
            out["error"] = str(e)
        torch.save(out, os.path.join(path, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
