# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The options of the library, one ``StrEnum`` each (as MONAI's ``monai.utils.enums``), and :func:`look_up`, which
reads them the MONAI way.

Every public argument that takes one of a fixed set of names is read with :func:`look_up`: the enum member or its
string value (``Regularizer.MEEP_KL`` or ``"meep_kl"``) is accepted, anything else that is not a string is a
``TypeError``, and an unknown string a ``ValueError`` from ``monai.utils.look_up_option`` (which suggests the
closest name and lists the valid ones). The application (:mod:`monai_meep.apps`) reuses these enums, so a name
means the same in Python, in the bundles' configs and on the command line (docs/losses.md, "Names").
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from monai.utils import StrEnum, look_up_option

__all__ = ["Activation", "InputType", "Regularizer", "look_up"]

E = TypeVar("E", bound=StrEnum)


class Activation(StrEnum):
    """The activation of a network output: softmax over channels (``C >= 2`` exclusive classes) or sigmoid per
    channel (binary or multi-label)."""

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"


class Regularizer(StrEnum):
    """The train-time regularisers. The spellings are the bundles' and the command line's (recorded in run folders
    and committed results), and :class:`~monai_meep.losses.MEEPLoss` takes the same ones.

    - ``NONE``: the segmentation loss alone (the application's ``build_loss`` and the bundles);
    - ``MEEP_ENTROPY``: Eq. 1 of the paper, ``- lambda * H_W`` on the misclassified set;
    - ``MEEP_KL``: Eq. 2, ``+ lambda * KL(u || p)`` on the misclassified set;
    - ``CONFIDENCE_PENALTY``: Pereyra et al.'s entropy over every voxel, ``- beta * mean H``
      (:class:`~monai_meep.losses.ConfidencePenaltyLoss`).
    """

    NONE = "none"
    MEEP_ENTROPY = "meep_entropy"
    MEEP_KL = "meep_kl"
    CONFIDENCE_PENALTY = "confidence_penalty"


class InputType(StrEnum):
    """What a calibrator is given: the network's logits or its probabilities."""

    LOGITS = "logits"
    PROBS = "probs"


def look_up(value: object, options: type[E], name: str, allowed: Collection[E] | None = None) -> E:
    """``value`` as a member of ``options`` (a ``StrEnum``), read with ``monai.utils.look_up_option``.

    Args:
        value: a member of ``options`` or its string value (surrounding blanks are ignored, as MONAI does).
        options: the enum.
        name: the argument's name, for the messages.
        allowed: the members this argument takes, when only some of ``options`` apply (``MEEPLoss`` takes the two
            MEEP regularisers).

    Raises:
        TypeError: ``value`` is neither a string nor a member of ``options``.
        ValueError: an unknown name, or one not in ``allowed`` (the message lists the valid names).

    Example:
        >>> look_up("meep_kl", Regularizer, "regularizer")
        <Regularizer.MEEP_KL: 'meep_kl'>
    """
    if not isinstance(value, str):
        valid = ", ".join(repr(m.value) for m in (allowed or options))
        raise TypeError(f"{name} must be a str (one of {valid}), got {type(value).__name__} {value!r}.")
    if isinstance(value, options) and (allowed is None or value in allowed):
        # already a member: returned as is, which also keeps torch.compile from tracing MONAI's string handling
        # (Dynamo cannot trace str methods called on a StrEnum member)
        return value
    supported = options if allowed is None else {m.value: options(m) for m in allowed}
    try:
        return options(look_up_option(value, supported))
    except ValueError as e:
        raise ValueError(f"{name}: {str(e).strip()}") from e
