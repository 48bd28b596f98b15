# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The package's distributed (DDP) helpers: whether a collective is needed, on which device it runs, the in-place
all-reduce every exact accumulator (calibration histograms, calibrators' logit histograms, class-count checks) uses.

The collective-device rule is written here only: NCCL reduces CUDA tensors only, so CPU state travels through the
current CUDA device and back; gloo (and any other backend) reduces the tensor where it is.

``torch.distributed`` is used directly rather than ``ignite.distributed`` (pytorch-ignite 0.5.5): ``idist.all_reduce``
returns a new tensor on ``idist.device()`` (the CPU under gloo, also for a CUDA tensor), takes its ops as strings, and
keeps the distributed context it found on first use (a process group destroyed and initialised again needs
``idist.sync()``); the accumulators here are reduced in place, on their own device under gloo, with the
``ReduceOp`` and the group a caller passes. The handlers' rank checks use ``idist.get_rank()``, which is equivalent.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["all_reduce_", "collective_device", "get_rank", "is_distributed"]


def is_distributed(group: Any = None) -> bool:
    """Whether ``torch.distributed`` is initialised with more than one rank (in ``group``, default the world)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def get_rank(group: Any = None) -> int:
    """This process's rank (in ``group``), 0 when ``torch.distributed`` is not initialised."""
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def collective_device(device: torch.device | str, group: Any = None) -> torch.device:
    """The device a collective on a tensor held on ``device`` runs on: the current CUDA device under NCCL for a
    non-CUDA tensor (NCCL reduces CUDA tensors only), else ``device`` itself. Needs an initialised process group."""
    device = torch.device(device)
    if dist.get_backend(group) == "nccl" and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def all_reduce_(tensor: torch.Tensor, op: Any = None, group: Any = None) -> torch.Tensor:
    """Reduce ``tensor`` in place across the ranks (``op`` default ``ReduceOp.SUM``); a no-op (no copy, no sync)
    without an initialised process group of more than one rank. Integer sums are exact; every rank must call it.

    Returns:
        ``tensor``, reduced.
    """
    if not is_distributed(group):
        return tensor
    op = dist.ReduceOp.SUM if op is None else op
    comm = collective_device(tensor.device, group)
    if comm == tensor.device and tensor.is_contiguous():
        dist.all_reduce(tensor, op=op, group=group)
        return tensor
    moved = tensor.to(comm).contiguous()
    dist.all_reduce(moved, op=op, group=group)
    tensor.copy_(moved.to(tensor.device))
    return tensor
