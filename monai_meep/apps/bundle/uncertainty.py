# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The bundles' evaluation-time uncertainty baselines: the evaluator's inferer for ``--uncertainty``.

``configs/evaluate.json`` sets ``validate#evaluator#inferer`` to :func:`evaluation_inferer`: with
``uncertainty`` ``"none"`` (the default) it is the bundle's sliding-window inferer unchanged; ``"ensemble"`` averages
the probabilities of the models in ``ensemble_ckpts`` (a deep ensemble, e.g. the seeds of one table row);
``"mc_dropout"`` averages ``mc_samples`` passes of the model with its dropout layers sampling (train it with
``--dropout``); ``"tta"`` averages the predictions of all flips of the spatial axes. The evaluator then gets a
probability map, so ``evaluate.json`` switches its softmax off (``Activationsd``), and the metrics, maps and
reliability figures are those of that map. Docs: ``docs/baselines.md``, "Uncertainty baselines".
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.utils import StrEnum, look_up_option

from monai_meep.apps.bundle.support import read_checkpoint
from monai_meep.inferers import EnsembleInferer, FlipTTAInferer, MCDropoutInferer, ProbabilityInferer

__all__ = ["UncertaintyMethod", "evaluation_inferer", "load_member"]


class UncertaintyMethod(StrEnum):
    """The bundles' ``uncertainty`` option."""

    NONE = "none"
    ENSEMBLE = "ensemble"
    MC_DROPOUT = "mc_dropout"
    TTA = "tta"


def load_member(path: str, network_def: torch.nn.Module, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A copy of ``network_def`` holding the weights of the checkpoint ``path`` (checked first, as ``model.pt``).

    Raises:
        ValueError: a missing or unreadable file, or weights of another network
            (:func:`~monai_meep.apps.bundle.support.read_checkpoint`).
    """
    state = read_checkpoint(path, network_def, required=True)
    net = copy.deepcopy(network_def)
    net.load_state_dict(state)
    return net.to(device)


def evaluation_inferer(
    method: str,
    inferer: Callable[..., Any],
    network_def: torch.nn.Module | None = None,
    ensemble_ckpts: Sequence[str] = (),
    num_samples: int = 10,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
    dropout: float = 0.0,
) -> Callable[..., Any]:
    """The evaluator's inferer for the ``uncertainty`` option ``method``.

    Args:
        method: a :class:`UncertaintyMethod` value.
        inferer: the bundle's inferer (sliding window); each pass of each member runs through it.
        network_def: the bundle's network, copied for each ensemble member.
        ensemble_ckpts: the members' ``model.pt`` files (``"ensemble"``: at least two).
        num_samples: MC-dropout passes.
        seed: seed of the MC-dropout masks (the same for every subject; ``None``: the global random state).
        device: where the ensemble members run.
        dropout: the network's dropout rate (``"mc_dropout"`` needs it above 0).

    Returns:
        ``inferer`` itself for ``"none"``, else a :class:`~monai_meep.inferers.ProbabilityInferer` (probabilities).

    Raises:
        ValueError: an unknown method, fewer than two ensemble members, members given without ``"ensemble"``,
            or ``"mc_dropout"`` with ``dropout == 0``.

    Example::

        python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json']" \\
            --uncertainty ensemble --ensemble_ckpts "['runs/s0/models/model.pt','runs/s1/models/model.pt']"
    """
    method = look_up_option(method, UncertaintyMethod)
    ckpts = [str(p) for p in (ensemble_ckpts or [])]
    if ckpts and method != UncertaintyMethod.ENSEMBLE:
        raise ValueError(f"ensemble_ckpts is for uncertainty 'ensemble'; got uncertainty {method!r}.")
    if method == UncertaintyMethod.NONE:
        return inferer
    if method == UncertaintyMethod.ENSEMBLE:
        if len(ckpts) < 2 or network_def is None:
            raise ValueError(f"uncertainty 'ensemble' needs two or more ensemble_ckpts (model.pt files); got {ckpts}.")
        members = [load_member(p, network_def, device) for p in ckpts]
        return ProbabilityInferer(EnsembleInferer(inferer, mutual_information=False), members)
    if method == UncertaintyMethod.MC_DROPOUT:
        if not float(dropout) > 0.0:
            raise ValueError(
                "uncertainty 'mc_dropout' samples the network's dropout layers, but dropout is 0: train and "
                "evaluate with --dropout 0.1 (say)."
            )
        return ProbabilityInferer(MCDropoutInferer(int(num_samples), inferer, mutual_information=False, seed=seed))
    return ProbabilityInferer(FlipTTAInferer(inferer=inferer, mutual_information=False))
