# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Which activation a segmentation loss applies to the logits: the one rule :class:`~monai_meep.losses.MEEPLoss` and
:class:`~monai_meep.losses.ConfidencePenaltyLoss` read it by.

The regularisers are computed from ``log_softmax`` / ``logsigmoid`` of the logits (docs/losses.md), so the wrapper
must know which of the two the wrapped loss applies. :func:`infer_activation` reads what the loss declares, the first
rule that applies winning:

1. an explicit ``activation=`` (``"softmax"`` or ``"sigmoid"``);
2. the loss's own declaration, read from its attributes in this order:

   a. ``activation``, a string (a :class:`~monai_meep.losses.MEEPLoss` / ``ConfidencePenaltyLoss`` wrapped again);
   b. the boolean flags ``softmax`` / ``sigmoid`` (MONAI's ``DiceLoss``, ``GeneralizedDiceLoss``, ``TverskyLoss``,
      ``MCCLoss``, ``HausdorffDTLoss``, ``LogHausdorffDTLoss``, ``BoundaryLoss``, ``SoftclDiceLoss``; this package's
      baselines declare ``softmax = True``), then ``pre_softmax`` / ``pre_sigmoid`` (``MaskedDiceLoss`` applies its
      activation before masking and keeps its own ``softmax`` / ``sigmoid`` False), then ``use_softmax``
      (``FocalLoss``, which always applies one of the two: ``False`` means sigmoid);
   c. ``other_act`` (or ``MaskedDiceLoss``'s ``pre_other_act``) when it is a sigmoid (``torch.sigmoid``,
      ``torch.nn.functional.sigmoid``, ``torch.Tensor.sigmoid``, ``torch.special.expit``, ``nn.Sigmoid()``) or a
      softmax over the channel dim (``nn.Softmax(dim=1)``, or ``functools.partial(torch.softmax, dim=1)`` and the
      same of ``torch.nn.functional.softmax`` / ``torch.Tensor.softmax`` / ``torch.special.softmax``). Any other
      callable (``torch.tanh``, a lambda, a softmax over another or an implicit dim) is an activation MEEP cannot
      reproduce from the logits: refused, whatever inner losses say;
   d. class-level knowledge of losses whose forward always applies an activation and declares it nowhere:
      ``torch.nn.CrossEntropyLoss`` (softmax), ``torch.nn.BCEWithLogitsLoss`` (sigmoid), MONAI's
      ``GeneralizedWassersteinDiceLoss`` (its forward takes ``F.softmax(input, dim=1)``);
3. the inner losses, in the order ``dice``, ``generalized_dice``, ``focal``, ``cross_entropy``, ``loss``, each read
   by rule 2 and then its own inner losses; the first that declares an activation wins. This covers MONAI's compound
   losses: ``DiceCELoss`` (its ``dice`` flags, else its ``cross_entropy``: softmax; note that MONAI switches to a
   BCE for a one-channel input, where ``activation="sigmoid"`` must be passed), ``DiceFocalLoss`` and
   ``GeneralizedDiceFocalLoss`` (the Dice flags, else the focal part, a sigmoid focal), ``SoftDiceclDiceLoss``,
   ``NACLLoss`` (its ``cross_entropy``: softmax; the logit penalty reads the raw logits), and the wrappers
   ``DeepSupervisionLoss`` / ``MaskedLoss`` (``loss``).

When nothing declares an activation the loss is refused with a ``ValueError`` that names it and the ``activation=``
way out: MONAI's losses built without ``softmax`` / ``sigmoid`` / ``other_act`` expect probabilities, and
``AsymmetricUnifiedFocalLoss`` applies none either (its forward clamps its input to ``[eps, 1 - eps]``, although its
docstring speaks of a sigmoid).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monai_meep.losses.functional import check_activation

__all__ = ["INNER_LOSSES", "infer_activation"]

#: attributes holding the inner losses of compound / wrapping losses, in the order their activation is read
INNER_LOSSES = ("dice", "generalized_dice", "focal", "cross_entropy", "loss")

# element-wise sigmoids (no argument but the input)
_SIGMOIDS = (torch.sigmoid, F.sigmoid, torch.Tensor.sigmoid, torch.special.expit)
# softmax functions, declared as such when bound to ``dim=1`` by functools.partial
_SOFTMAXES = (torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax)
# losses whose forward always applies an activation without an attribute saying so (class name -> activation;
# names, so that MONAI losses missing from an older MONAI need no import here)
_ALWAYS = {
    "GeneralizedWassersteinDiceLoss": "softmax",  # monai.losses.dice: probs = F.softmax(flat_input, dim=1)
}
_MAX_DEPTH = 8  # inner losses nest two or three deep; a bound instead of a cycle check


class _Refused(Exception):
    """A loss declares an activation MEEP cannot reproduce (an unknown ``other_act``)."""


def _callable_activation(fn: Callable) -> str | None:
    """``"softmax"`` / ``"sigmoid"`` for a known activation callable, else None."""
    func, args, kwargs = fn, (), {}
    if isinstance(fn, functools.partial):
        func, args, kwargs = fn.func, fn.args, dict(fn.keywords)
    if args:  # positional arguments of a partial come before the input: not an activation of the input alone
        return None
    if isinstance(func, nn.Sigmoid) or any(func is s for s in _SIGMOIDS):
        return "sigmoid" if not kwargs else None
    if isinstance(func, nn.Softmax):
        return "softmax" if func.dim == 1 and not kwargs else None
    if any(func is s for s in _SOFTMAXES):
        return "softmax" if kwargs == {"dim": 1} else None
    return None


def _own_activation(loss: Any) -> str | None:
    """Rule 2 on ``loss`` alone (not its inner losses). Raises :class:`_Refused` for an unknown ``other_act``."""
    declared = getattr(loss, "activation", None)
    if isinstance(declared, str) and declared in ("softmax", "sigmoid"):
        return declared
    for softmax_name, sigmoid_name in (("softmax", "sigmoid"), ("pre_softmax", "pre_sigmoid")):
        softmax, sigmoid = getattr(loss, softmax_name, None), getattr(loss, sigmoid_name, None)
        if softmax is True and sigmoid is not True:
            return "softmax"
        if sigmoid is True and softmax is not True:
            return "sigmoid"
    use_softmax = getattr(loss, "use_softmax", None)
    if isinstance(use_softmax, bool):
        return "softmax" if use_softmax else "sigmoid"
    for name in ("other_act", "pre_other_act"):
        fn = getattr(loss, name, None)
        if fn is not None:
            act = _callable_activation(fn)
            if act is None:
                raise _Refused(
                    f"{type(loss).__name__} applies {name}={fn!r}, which is neither a sigmoid nor a softmax over the "
                    "channel dim (nn.Softmax(dim=1), functools.partial(torch.softmax, dim=1))"
                )
            return act
    if isinstance(loss, nn.CrossEntropyLoss):
        return "softmax"
    if isinstance(loss, nn.BCEWithLogitsLoss):
        return "sigmoid"
    return _ALWAYS.get(type(loss).__name__)


def _declared_activation(loss: Any, depth: int = 0) -> str | None:
    """Rules 2 and 3: the loss's own declaration, else the first inner loss's."""
    act = _own_activation(loss)
    if act is not None or depth >= _MAX_DEPTH:
        return act
    for name in INNER_LOSSES:
        inner = getattr(loss, name, None)
        if inner is not None and inner is not loss and callable(inner):
            act = _declared_activation(inner, depth + 1)
            if act is not None:
                return act
    return None


def infer_activation(loss: Callable, activation: str | None = None) -> str:
    """The activation ``loss`` applies to the logits, by the rule of this module's docstring.

    Args:
        loss: a segmentation loss called on logits (a MONAI or torch loss, a compound or wrapping loss).
        activation: ``"softmax"`` or ``"sigmoid"`` to say it explicitly (checked, then returned as it is).

    Returns:
        ``"softmax"`` or ``"sigmoid"``.

    Raises:
        ValueError: ``activation`` is neither; or none is given and ``loss`` declares no activation, or one that is
            neither a sigmoid nor a softmax over channels. The message names the loss and ``activation=``.

    Example:
        >>> from monai.losses import DiceCELoss, FocalLoss, MaskedDiceLoss
        >>> infer_activation(DiceCELoss(to_onehot_y=True))  # the CE part is a softmax
        'softmax'
        >>> infer_activation(MaskedDiceLoss(sigmoid=True)), infer_activation(FocalLoss())
        ('sigmoid', 'sigmoid')
    """
    if activation is not None:
        return check_activation(activation)
    way_out = (
        "pass activation='softmax' (exclusive classes, C >= 2) or activation='sigmoid' (per-channel / binary) "
        "if the loss is called on logits with one of them."
    )
    try:
        act = _declared_activation(loss)
    except _Refused as e:
        name = type(loss).__name__
        raise ValueError(f"cannot tell which activation {name} applies to the logits: {e}; {way_out}") from None
    if act is None:
        raise ValueError(
            f"cannot tell which activation {type(loss).__name__} applies to the logits: it declares none (no "
            "softmax / sigmoid flag, use_softmax, known other_act, or inner loss that does; such a loss may expect "
            f"probabilities); {way_out}"
        )
    return act
