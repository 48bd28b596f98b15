# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The paper's settings: its training losses by name, a MONAI base loss optionally wrapped in a MEEP regulariser.

Application code (:mod:`monai_meep.apps`): the task names (``"wmh"``, ``"la"``), the paper's lambdas and the bundles'
loss names live here; the losses themselves are the library's (:mod:`monai_meep.losses`).

``build_loss(base, regularizer, weight=None, task=...)`` is what the bundles call; ``weight=None`` takes the paper's
lambda for the task and base loss (the paper, section 3; docs/bundles.md). Besides the paper's three base losses it
builds the field's calibration baselines with their published defaults (docs/baselines.md). All losses expect
``(B, 2, *spatial)``
logits (softmax over 2 channels) and index targets ``(B, 1, *spatial)``; voxels labelled ``ignore_index`` (WMH label
2) are left out of the base loss and of the regulariser's error set.
"""

from __future__ import annotations

from monai.losses import DiceLoss, FocalLoss
from torch.nn.modules.loss import _Loss

from monai_meep.enums import Regularizer
from monai_meep.losses import ace, focal_adaptive, label_smoothing, margin, nacl, svls
from monai_meep.losses.cross_entropy import IndexCrossEntropyLoss
from monai_meep.losses.meep import ConfidencePenaltyLoss, MEEPLoss

__all__ = [
    "BASELINE_LOSSES",
    "BASE_LOSSES",
    "PAPER_BASE_LOSSES",
    "PAPER_LAMBDA",
    "REGULARIZERS",
    "TASKS",
    "build_loss",
    "paper_lambda",
]

#: the paper's base losses (those with a lambda in PAPER_LAMBDA)
PAPER_BASE_LOSSES = ("dice", "ce", "focal")
#: the field's calibration baselines (docs/baselines.md), selectable as base losses too
BASELINE_LOSSES = ("ls", "ls_dice", "svls", "mbls", "nacl", "ml1ace", "ml1ace_soft", "flsd")
BASE_LOSSES = PAPER_BASE_LOSSES + BASELINE_LOSSES
#: the library's names (monai_meep.enums.Regularizer): the same spelling in Python, the bundles and the CLI
REGULARIZERS = tuple(r.value for r in Regularizer)
TASKS = ("wmh", "la")

# Paper (Larrazabal et al. 2023), section 3: lambda per task and base loss. The paper reports no MEEP-on-focal rows;
# focal is a re-weighted cross-entropy, so it takes the CE value (documented in docs/bundles.md).
PAPER_LAMBDA: dict[tuple[str, str], float] = {
    ("wmh", "ce"): 0.3,
    ("wmh", "dice"): 1.0,
    ("wmh", "focal"): 0.3,
    ("la", "ce"): 0.1,
    ("la", "dice"): 0.5,
    ("la", "focal"): 0.1,
}
# Pereyra et al. confidence penalty strength used by the paper for the H(Y) rows.
CONFIDENCE_PENALTY_BETA = 0.2


def _check(name: str, value: object, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {', '.join(valid)}; got {type(value).__name__} {value!r}.")
    if value.lower() not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid names are {', '.join(valid)}.")
    return value.lower()


def paper_lambda(task: str, base: str, regularizer: str = "meep_kl") -> float:
    """The paper's regulariser weight for ``task`` / ``base`` loss (beta = 0.2 for the confidence penalty).

    The paper has no MEEP lambda for the calibration baselines (``BASELINE_LOSSES``): asking for one raises a
    ``ValueError``, except with ``regularizer="none"`` (no regulariser, nothing to weigh: 0.0).

    Example::

        >>> paper_lambda("la", "dice")
        0.5
    """
    regularizer = _check("regularizer", regularizer, REGULARIZERS)
    if regularizer == "confidence_penalty":
        return CONFIDENCE_PENALTY_BETA
    task, base = _check("task", task, TASKS), _check("base loss", base, BASE_LOSSES)
    if base not in PAPER_BASE_LOSSES:
        if regularizer == "none":
            # nothing to weigh; the bundles evaluate this for every listed loss, also the unused MEEP ones
            return 0.0
        raise ValueError(
            f"the paper gives no MEEP lambda for base loss {base!r} (only for {', '.join(PAPER_BASE_LOSSES)}); "
            "pass the weight explicitly (bundles: --meep_lambda)."
        )
    return PAPER_LAMBDA[(task, base)]


def _baseline_loss(base: str, ignore_index: int | None, spatial_dims: int) -> _Loss:
    """The field's calibration baselines with their published defaults (docs/baselines.md)."""
    if base == "ls":
        return label_smoothing.LabelSmoothingCELoss(smoothing=0.1, ignore_index=ignore_index)
    if base == "ls_dice":
        # the same Dice as the "dice" base loss, against smoothed targets
        return label_smoothing.LabelSmoothingDiceLoss(
            smoothing=0.1, include_background=False, batch=True, ignore_index=ignore_index
        )
    if base == "svls":
        return svls.SVLSLoss(kernel_size=3, sigma=1.0, ignore_index=ignore_index)
    if base == "mbls":
        return margin.MbLSLoss(margin=10.0, alpha=0.1, ignore_index=ignore_index)
    if base == "nacl":
        return nacl.IndexNACLLoss(classes=2, dim=spatial_dims, alpha=0.1, ignore_index=ignore_index)
    if base in ("ml1ace", "ml1ace_soft"):
        return ace.DiceCEML1ACELoss(
            include_background=False,
            batch=True,
            binning="soft" if base == "ml1ace_soft" else "hard",
            ignore_index=ignore_index,
        )
    return focal_adaptive.FLSDLoss(gamma_low=5.0, gamma_high=3.0, threshold=0.2, ignore_index=ignore_index)


def _base_loss(base: str, ignore_index: int | None, spatial_dims: int = 3) -> _Loss:
    if base == "dice":
        # foreground Dice pooled over the batch: patches without foreground still give a defined loss
        return DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True, ignore_index=ignore_index)
    if base == "ce":
        return IndexCrossEntropyLoss(ignore_index=ignore_index)
    if base == "focal":
        return FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0, ignore_index=ignore_index)
    return _baseline_loss(base, ignore_index, spatial_dims)


def build_loss(
    base: str = "dice",
    regularizer: str = "none",
    weight: float | None = None,
    task: str | None = None,
    ignore_index: int | None = None,
    spatial_dims: int = 3,
) -> _Loss:
    """Build ``base`` loss (+ ``regularizer``) for 2-channel softmax outputs and index labels.

    Args:
        base: ``"dice"`` (MONAI ``DiceLoss``, foreground, batch-pooled), ``"ce"`` (cross-entropy), ``"focal"``
            (MONAI ``FocalLoss``, gamma 2), or a calibration baseline with its published defaults: ``"ls"`` (CE with
            label smoothing 0.1), ``"ls_dice"`` (the ``"dice"`` loss against smoothed targets), ``"svls"``,
            ``"mbls"`` (m = 10, lambda = 0.1), ``"nacl"`` (MONAI's, mean filter 3, alpha 0.1), ``"ml1ace"`` /
            ``"ml1ace_soft"`` (Dice + CE + hard / soft mL1-ACE, 20 bins), ``"flsd"`` (FLSD-53); docs/baselines.md.
        regularizer: ``"none"``, ``"meep_entropy"`` (Eq. 1, ``MEEPLoss``), ``"meep_kl"`` (Eq. 2, ``MEEPLoss``) or
            ``"confidence_penalty"`` (all-voxel entropy, ``ConfidencePenaltyLoss``).
        weight: the regulariser weight (lambda / beta); ``None`` takes the paper's value for ``task`` and ``base``
            (``task`` is then required for the MEEP regularisers).
        task: ``"wmh"`` or ``"la"``; only used to look up the paper's lambda.
        ignore_index: label left out of the loss and of the error set (2 for WMH).
        spatial_dims: 2 or 3; only read by ``"nacl"`` (MONAI's ``NACLLoss`` fixes its filter at construction).

    Returns:
        a ``torch.nn.modules.loss._Loss`` taking ``(input, target)``.

    Raises:
        ValueError: for an unknown name (the message lists the valid names), a negative weight, or a missing ``task``
            when the paper's lambda is needed (the paper has none for the calibration baselines).

    Example::

        >>> import torch
        >>> loss = build_loss("dice", "meep_kl", task="la")  # lambda = 0.5
        >>> loss(torch.randn(2, 2, 8, 8, 8), torch.randint(0, 2, (2, 1, 8, 8, 8))).shape
        torch.Size([])
    """
    base = _check("base loss", base, BASE_LOSSES)
    regularizer = _check("regularizer", regularizer, REGULARIZERS)
    if task is not None:
        task = _check("task", task, TASKS)
    if ignore_index is not None and not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}.")
    seg = _base_loss(base, ignore_index, spatial_dims)
    if regularizer == "none":
        return seg
    if weight is None:
        if regularizer != "confidence_penalty" and task is None:
            raise ValueError(
                f"regularizer {regularizer!r} needs either weight=<lambda> or task='wmh'|'la' for the paper's lambda."
            )
        weight = paper_lambda(task or "la", base, regularizer)
    weight = float(weight)
    if not weight >= 0.0:
        raise ValueError(f"regularizer weight must be >= 0, got {weight}.")
    if regularizer == "confidence_penalty":
        # the penalty covers all voxels and reads no labels, so WMH label 2 passes; the base loss checks the labels
        return ConfidencePenaltyLoss(seg, weight=weight, activation="softmax")
    return MEEPLoss(seg, regularizer=regularizer, weight=weight, ignore_index=ignore_index, activation="softmax")
