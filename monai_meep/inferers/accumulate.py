# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Running mean of probabilities with the predictive entropy and mutual information of the members.

The shared part of :mod:`monai_meep.inferers.uncertainty` (ensembles, MC dropout, flip TTA): each network output is
turned into probabilities and added to running sums, never stacked. Docs: ``docs/baselines.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.data import MetaTensor
from monai.utils import StrEnum, look_up_option

from monai_meep.transforms.uncertainty import predictive_entropy

__all__ = ["ProbabilityAccumulator", "ProbabilityActivation", "UncertaintyOutput"]


class ProbabilityActivation(StrEnum):
    """How a network output becomes probabilities.

    * ``softmax``: logits over ``C >= 2`` mutually exclusive classes (the bundles);
    * ``sigmoid``: per-channel logits of independent binary problems (entropy summed over the channels);
    * ``none``: the output already is probabilities (one channel: a foreground probability).
    """

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"
    NONE = "none"


@dataclass
class UncertaintyOutput:
    """The mean probability and uncertainty maps of ``num_samples`` predictions.

    Attributes:
        probs: mean probability, ``(B, C, *spatial)``, float32 (float64 for float64 outputs). Already
            probabilities: do not apply softmax / sigmoid downstream.
        entropy: predictive entropy of ``probs`` in nats, ``(B, 1, *spatial)``, float32.
        mutual_information: entropy of the mean minus the mean of the members' entropies, ``(B, 1, *spatial)``,
            float32, >= 0; ``None`` where it was not asked for.
        num_samples: the number of predictions averaged.
    """

    probs: torch.Tensor
    entropy: torch.Tensor
    mutual_information: torch.Tensor | None
    num_samples: int

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The maps by name (``prob``, ``entropy`` and, when computed, ``mutual_information``)."""
        out = {"prob": self.probs, "entropy": self.entropy}
        if self.mutual_information is not None:
            out["mutual_information"] = self.mutual_information
        return out


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


class ProbabilityAccumulator:
    """Running sums of the probabilities (and of their entropies) of network outputs added one at a time.

    Memory: one ``(B, C, *spatial)`` sum plus, for the mutual information, one ``(B, 1, *spatial)`` sum.

    Args:
        activation: a :class:`ProbabilityActivation` (``"softmax"``, ``"sigmoid"``, ``"none"``).
        mutual_information: also sum the members' entropies, for :attr:`UncertaintyOutput.mutual_information`.

    Raises:
        ValueError: an unknown activation.

    Example::

        >>> acc = ProbabilityAccumulator("softmax")
        >>> for _ in range(3):
        ...     acc.add(torch.randn(1, 2, 4, 4))
        >>> acc.result().probs.shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, activation: str = ProbabilityActivation.SOFTMAX, mutual_information: bool = True) -> None:
        self.activation = look_up_option(activation, ProbabilityActivation)
        self.mutual_information = bool(mutual_information)
        self.count = 0
        self._sum: torch.Tensor | None = None
        self._entropy_sum: torch.Tensor | None = None
        self._like: MetaTensor | None = None

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """The probabilities of one network output, in float32 at least."""
        x = _plain(output)
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        if self.activation == ProbabilityActivation.SOFTMAX:
            if x.shape[1] < 2:
                raise ValueError(
                    f"softmax over {x.shape[1]} channel is constant 1; use activation='sigmoid' for a single "
                    "foreground logit."
                )
            return torch.softmax(x, dim=1)
        if self.activation == ProbabilityActivation.SIGMOID:
            return torch.sigmoid(x)
        return x

    def entropy(self, probs: torch.Tensor) -> torch.Tensor:
        """Entropy (nats, float32) of ``(B, C, *spatial)`` probabilities, ``(B, 1, *spatial)``: categorical over
        the channels, or for ``sigmoid`` the sum of the channels' Bernoulli entropies."""
        if self.activation == ProbabilityActivation.SIGMOID and probs.shape[1] > 1:
            return sum(predictive_entropy(probs[:, c : c + 1], channel_dim=1) for c in range(probs.shape[1]))
        return predictive_entropy(probs, channel_dim=1)

    def add(self, output: torch.Tensor) -> None:
        """Add one network output (logits, or probabilities for ``activation="none"``), ``(B, C, *spatial)``.

        Raises:
            TypeError: ``output`` is not a tensor (e.g. a tuple of deep-supervision heads), or not floating point.
            ValueError: fewer than 3 dimensions, or another shape than the first output's.
        """
        if not torch.is_tensor(output):
            raise TypeError(
                f"the network (through its inferer) must return one tensor (B, C, *spatial), got {type(output)}."
            )
        if not output.is_floating_point():
            raise TypeError(f"network outputs must be floating point, got {output.dtype}.")
        if output.ndim < 3:
            raise ValueError(f"network outputs must be (B, C, *spatial), got shape {tuple(output.shape)}.")
        if self._sum is not None and output.shape != self._sum.shape:
            raise ValueError(
                f"output {self.count + 1} has shape {tuple(output.shape)}, the first had {tuple(self._sum.shape)}; "
                "all members must predict the same classes on the same grid."
            )
        probs = self.probabilities(output)
        if self._sum is None:
            self._like = output if isinstance(output, MetaTensor) else None
            self._sum = probs.clone()
        else:
            self._sum += probs.to(self._sum.dtype)
        if self.mutual_information:
            ent = self.entropy(probs)
            self._entropy_sum = ent if self._entropy_sum is None else self._entropy_sum + ent
        self.count += 1

    def _meta(self, x: torch.Tensor) -> torch.Tensor:
        if self._like is None:
            return x
        out = MetaTensor(x)
        out.copy_meta_from(self._like)
        return out

    def result(self) -> UncertaintyOutput:
        """The mean probability and the uncertainty maps of the outputs added so far.

        Raises:
            ValueError: nothing was added.
        """
        if self._sum is None:
            raise ValueError("no output was added; nothing to average.")
        probs = self._sum / self.count
        entropy = self.entropy(probs)
        mi = None
        if self._entropy_sum is not None:
            # >= 0 by Jensen (entropy is concave); the clamp only removes float rounding below 0
            mi = (entropy - self._entropy_sum / self.count).clamp_min(0.0)
        return UncertaintyOutput(
            probs=self._meta(probs),
            entropy=self._meta(entropy),
            mutual_information=None if mi is None else self._meta(mi),
            num_samples=self.count,
        )
