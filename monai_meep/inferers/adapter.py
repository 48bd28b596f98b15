# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""An uncertainty inferer as a plain MONAI inferer: what ``SupervisedEvaluator`` and a bundle's ``inferer`` expect.

MONAI's evaluators call ``inferer(inputs, network)`` and take a tensor back. The inferers of
:mod:`monai_meep.inferers.uncertainty` return an :class:`~monai_meep.inferers.accumulate.UncertaintyOutput`
(probabilities, entropy, mutual information); :class:`ProbabilityInferer` hands the evaluator the mean
probabilities, and for a deep ensemble supplies the member networks in place of the evaluator's one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from .uncertainty import EnsembleInferer

__all__ = ["ProbabilityInferer"]


class ProbabilityInferer(Inferer):
    """The mean probability map of an uncertainty inferer, as a tensor-valued MONAI inferer.

    The output is already a probability map: the evaluator's post-processing must not apply softmax / sigmoid
    again (the bundles' ``Activationsd`` is switched off when ``uncertainty`` is not ``"none"``).

    Args:
        inferer: an :class:`~monai_meep.inferers.EnsembleInferer`, :class:`~monai_meep.inferers.MCDropoutInferer`
            or :class:`~monai_meep.inferers.FlipTTAInferer` (anything returning an object with ``.probs``).
        networks: the members of an ensemble (required with an ``EnsembleInferer``, refused otherwise); the network
            the evaluator passes is then not used.

    Raises:
        TypeError: ``inferer`` is not callable.
        ValueError: an ``EnsembleInferer`` without ``networks``, or ``networks`` with another inferer.

    Example::

        >>> from monai_meep.inferers import FlipTTAInferer
        >>> net = torch.nn.Conv3d(1, 2, 1)
        >>> ProbabilityInferer(FlipTTAInferer())(torch.randn(1, 1, 4, 4, 4), net).shape
        torch.Size([1, 2, 4, 4, 4])
    """

    def __init__(self, inferer: Callable[..., Any], networks: Sequence[torch.nn.Module] | None = None) -> None:
        super().__init__()
        if not callable(inferer):
            raise TypeError(f"inferer must be callable, got {type(inferer).__name__}.")
        ensemble = isinstance(inferer, EnsembleInferer)
        if ensemble and not networks:
            raise ValueError("an EnsembleInferer needs its member networks (networks=[...]); got none.")
        if not ensemble and networks is not None:
            raise ValueError(
                f"networks are the members of an ensemble; {type(inferer).__name__} takes the evaluator's."
            )
        self.inferer = inferer
        self.networks = None if networks is None else torch.nn.ModuleList(networks)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """The mean probabilities ``(B, C, *spatial)`` of ``inputs`` (``network``: ignored for an ensemble)."""
        out = self.inferer(inputs, self.networks if self.networks is not None else network, *args, **kwargs)
        return out.probs
