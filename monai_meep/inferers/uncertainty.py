# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Evaluation-time uncertainty baselines: deep ensembles, MC dropout and flip test-time augmentation.

Each inferer runs a network (or several) through a MONAI inferer (``SimpleInferer``, ``SlidingWindowInferer``, ...)
a number of times, turns every output into probabilities and keeps running sums, never a stack of the members:

* the mean probability ``p = (1/N) sum_n p_n``, ``(B, C, *spatial)``;
* the predictive entropy ``H[p]`` of the mean, ``(B, 1, *spatial)``
  (:func:`monai_meep.transforms.uncertainty.predictive_entropy`);
* the mutual information ``MI = H[p] - (1/N) sum_n H[p_n]`` (the BALD / epistemic part), ``(B, 1, *spatial)``.

The outputs are probabilities: metrics and post-processing downstream must not apply softmax / sigmoid again
(``Activationsd(softmax=False)``, ``CalibrationHistogram`` on probabilities). Docs: ``docs/baselines.md``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer
from monai.utils import look_up_option

from .accumulate import ProbabilityAccumulator, ProbabilityActivation, UncertaintyOutput

__all__ = [
    "DROPOUT_TYPES",
    "EnsembleInferer",
    "FlipTTAInferer",
    "MCDropoutInferer",
    "dropout_layers",
    "mc_dropout_mode",
]

#: the module types that :func:`mc_dropout_mode` switches to train mode
DROPOUT_TYPES: tuple[type[torch.nn.Module], ...] = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)


@contextlib.contextmanager
def _eval_modes(network: torch.nn.Module, dropout: bool = False) -> Iterator[torch.nn.Module]:
    """Every module of ``network`` in eval mode (its dropout layers in train mode when ``dropout``), each module's
    own flag restored on exit, also after an exception. (MONAI's ``eval_mode`` restores only the top-level flag.)"""
    modes = [(m, m.training) for m in network.modules()]
    try:
        network.eval()
        if dropout:
            for m in dropout_layers(network):
                m.train()
        yield network
    finally:
        for m, training in modes:
            m.training = training


def dropout_layers(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The dropout modules (:data:`DROPOUT_TYPES`) of ``network``, in ``modules()`` order."""
    return [m for m in network.modules() if isinstance(m, DROPOUT_TYPES)]


@contextlib.contextmanager
def mc_dropout_mode(network: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block: ``network`` in eval mode except its dropout layers, which sample (train mode).

    Normalisation layers (BatchNorm, InstanceNorm with running stats) stay in eval mode: they use their running
    statistics and do not update them. Every module's mode is restored on exit, also after an exception. Dropout
    called functionally (``F.dropout(x, training=self.training)`` inside a custom module) is not switched.

    Args:
        network: a module holding at least one of :data:`DROPOUT_TYPES` (rate 0 allowed).

    Raises:
        TypeError: ``network`` is not a ``torch.nn.Module``.
        ValueError: it has no dropout layer (build it with dropout, e.g. the bundles' ``--dropout 0.1``).

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.Dropout(0.5))
        >>> with mc_dropout_mode(net):
        ...     print(net[0].training, net[1].training)
        False True
    """
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"MC dropout needs a torch.nn.Module, got {type(network).__name__}.")
    if not dropout_layers(network):
        raise ValueError(
            f"{type(network).__name__} has no dropout layer ({', '.join(t.__name__ for t in DROPOUT_TYPES)}), so "
            "its stochastic passes would all be equal; build it with dropout > 0 (bundles: --dropout 0.1)."
        )
    with _eval_modes(network, dropout=True) as net:
        yield net


class _MeanProbabilityInferer(Inferer):
    """Shared part: the inner MONAI inferer, the activation and the accumulation."""

    def __init__(
        self,
        inferer: Callable[..., Any] | None = None,
        activation: str = ProbabilityActivation.SOFTMAX,
        mutual_information: bool = True,
    ) -> None:
        super().__init__()
        if inferer is not None and not callable(inferer):
            raise TypeError(f"inferer must be a MONAI Inferer or callable(inputs, network), got {type(inferer)}.")
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.activation = look_up_option(activation, ProbabilityActivation)
        self.mutual_information = bool(mutual_information)

    def _accumulator(self) -> ProbabilityAccumulator:
        return ProbabilityAccumulator(self.activation, self.mutual_information)

    @staticmethod
    def _check_inputs(inputs: Any) -> None:
        if not torch.is_tensor(inputs):
            raise TypeError(f"inputs must be a tensor (B, C_in, *spatial), got {type(inputs).__name__}.")
        if inputs.ndim < 3:
            raise ValueError(f"inputs must be (B, C_in, *spatial), got shape {tuple(inputs.shape)}.")


class EnsembleInferer(_MeanProbabilityInferer):
    """Deep ensemble: the mean probability of several networks, each run through ``inferer``.

    The networks are taken one at a time from an iterable, so a generator that loads each member's weights on
    demand keeps one network in memory. Each member runs in eval mode under ``torch.no_grad()``; every module's
    mode is restored afterwards.

    Args:
        inferer: the MONAI inferer each member runs through (default ``SimpleInferer()``), e.g.
            ``SlidingWindowInferer(roi_size, sw_batch_size, overlap=0.5, mode="gaussian")``.
        activation: see :class:`ProbabilityActivation`.
        mutual_information: also return the mutual information map.

    Raises:
        TypeError: ``inferer`` is not callable.
        ValueError: an unknown activation.

    Example::

        >>> nets = [torch.nn.Conv3d(1, 2, 1) for _ in range(3)]
        >>> out = EnsembleInferer()(torch.randn(1, 1, 8, 8, 8), nets)
        >>> out.probs.shape, out.mutual_information.shape, out.num_samples
        (torch.Size([1, 2, 8, 8, 8]), torch.Size([1, 1, 8, 8, 8]), 3)
    """

    def __call__(
        self, inputs: torch.Tensor, networks: Iterable[Callable[..., Any]], *args: Any, **kwargs: Any
    ) -> UncertaintyOutput:
        """Average the members' probabilities on ``inputs`` (``(B, C_in, *spatial)``).

        Args:
            inputs: the batch given to every member.
            networks: the members (``nn.Module`` s or callables), e.g. a list or a ``torch.nn.ModuleList``.
            args: passed on to ``inferer``.
            kwargs: passed on to ``inferer``.

        Raises:
            TypeError: ``networks`` is a single module (not a ``ModuleList``) or holds a non-callable.
            ValueError: ``networks`` is empty, or members predict different shapes.
        """
        self._check_inputs(inputs)
        if isinstance(networks, torch.nn.Module) and not isinstance(networks, torch.nn.ModuleList):
            raise TypeError(
                f"networks must be a sequence of networks (list, ModuleList), got one {type(networks).__name__}."
            )
        acc = self._accumulator()
        with torch.no_grad():
            for i, net in enumerate(networks):
                if not callable(net):
                    raise TypeError(f"ensemble member {i} is not callable: {type(net).__name__}.")
                with _eval_modes(net) if isinstance(net, torch.nn.Module) else contextlib.nullcontext():
                    acc.add(self.inferer(inputs, net, *args, **kwargs))
        if acc.count == 0:
            raise ValueError("an ensemble needs at least one network; got none.")
        return acc.result()


@contextlib.contextmanager
def _seeded(seed: int | None, inputs: torch.Tensor, network: torch.nn.Module) -> Iterator[None]:
    """Seed torch's generators of the devices in use inside the block and restore them after (no-op if ``seed``
    is ``None``), so a seeded call neither depends on nor changes the caller's random state."""
    if seed is None:
        yield
        return
    tensors = itertools.chain([inputs], network.parameters(), network.buffers())
    cuda = {t.device for t in tensors if t.device.type == "cuda"}
    devices = sorted({torch.cuda.current_device() if d.index is None else d.index for d in cuda})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class MCDropoutInferer(_MeanProbabilityInferer):
    """MC dropout: ``num_samples`` stochastic passes of one network with its dropout layers sampling.

    The network runs under :func:`mc_dropout_mode` (dropout in train mode, BatchNorm / InstanceNorm and the rest
    in eval mode, all modes restored afterwards) and ``torch.no_grad()``. With a sliding-window inferer each window
    draws its own dropout masks.

    Args:
        num_samples: the number of passes ``N`` (default 10).
        inferer: the MONAI inferer of each pass (default ``SimpleInferer()``).
        activation: see :class:`ProbabilityActivation`.
        mutual_information: also return the mutual information map.
        seed: seed the passes (the caller's random state is left as it was); ``None`` draws from the global state.

    Raises:
        TypeError: ``num_samples`` or ``seed`` is not an integer, or ``inferer`` is not callable.
        ValueError: ``num_samples < 1``, or an unknown activation.

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.Dropout(0.2))
        >>> out = MCDropoutInferer(num_samples=4, seed=0)(torch.randn(1, 1, 8, 8, 8), net)
        >>> out.num_samples, out.entropy.shape
        (4, torch.Size([1, 1, 8, 8, 8]))
    """

    def __init__(
        self,
        num_samples: int = 10,
        inferer: Callable[..., Any] | None = None,
        activation: str = ProbabilityActivation.SOFTMAX,
        mutual_information: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(inferer, activation, mutual_information)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int):
            raise TypeError(f"num_samples must be an integer, got {num_samples!r}.")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an integer or None, got {seed!r}.")
        self.num_samples = num_samples
        self.seed = seed

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> UncertaintyOutput:
        """Average ``num_samples`` stochastic passes on ``inputs`` (``(B, C_in, *spatial)``).

        Raises:
            TypeError: ``network`` is not a module.
            ValueError: it has no dropout layer.
        """
        self._check_inputs(inputs)
        acc = self._accumulator()
        with mc_dropout_mode(network), torch.no_grad(), _seeded(self.seed, inputs, network):
            for _ in range(self.num_samples):
                acc.add(self.inferer(inputs, network, *args, **kwargs))
        return acc.result()


class FlipTTAInferer(_MeanProbabilityInferer):
    """Test-time augmentation by flips: the mean probability over every combination of flips of ``spatial_axes``.

    ``2^k`` passes for ``k`` axes (8 in 3D, the identity included); each output is flipped back before averaging
    (a flip is its own inverse, so the inversion is exact and needs no metadata).

    MONAI's ``monai.data.TestTimeAugmentation`` is not used: it takes one un-batched dictionary with metadata,
    draws its augmentations at random (``RandFlipd`` samples flips with repetition instead of visiting each once),
    inverts through ``Invertd`` on a stack of all ``N`` outputs (memory ``N`` times one map) and returns mode / mean /
    std / VVC rather than entropies; a tensor-in, tensor-out inferer with a fixed, exhaustive set of flips and
    running sums is simpler and exact.

    Args:
        spatial_axes: the spatial axes to flip (0 = first spatial dim, after batch and channel; negative counts
            from the last); ``None``: all of them.
        inferer: the MONAI inferer of each pass (default ``SimpleInferer()``).
        activation: see :class:`ProbabilityActivation`.
        mutual_information: also return the mutual information over the flips (augmentation variability).

    Raises:
        TypeError: an axis is not an integer, or ``inferer`` is not callable.
        ValueError: no axis, a repeated axis, or an unknown activation (an axis beyond the input's spatial dims
            raises when called).

    Example::

        >>> out = FlipTTAInferer()(torch.randn(1, 1, 8, 8, 8), torch.nn.Conv3d(1, 2, 1))
        >>> out.num_samples
        8
    """

    def __init__(
        self,
        spatial_axes: int | Sequence[int] | None = None,
        inferer: Callable[..., Any] | None = None,
        activation: str = ProbabilityActivation.SOFTMAX,
        mutual_information: bool = True,
    ) -> None:
        super().__init__(inferer, activation, mutual_information)
        if spatial_axes is not None:
            spatial_axes = (spatial_axes,) if isinstance(spatial_axes, int) else tuple(spatial_axes)
            if not spatial_axes:
                raise ValueError("spatial_axes is empty; give at least one axis, or None for all.")
            for a in spatial_axes:
                if isinstance(a, bool) or not isinstance(a, int):
                    raise TypeError(f"spatial_axes must be integers, got {a!r} in {spatial_axes}.")
        self.spatial_axes = spatial_axes

    def flips(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """The flipped tensor dims (spatial axis + 2) of each pass, identity ``()`` first.

        Raises:
            ValueError: an axis out of range for ``spatial_dims``, or the same axis twice.
        """
        axes = tuple(range(spatial_dims)) if self.spatial_axes is None else self.spatial_axes
        bad = [a for a in axes if not -spatial_dims <= a < spatial_dims]
        if bad:
            raise ValueError(f"spatial_axes {axes} out of range for {spatial_dims} spatial dims (bad: {bad}).")
        norm = [a % spatial_dims for a in axes]
        if len(set(norm)) != len(norm):
            raise ValueError(f"spatial_axes {axes} name the same axis twice.")
        dims = [a + 2 for a in sorted(norm)]
        return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> UncertaintyOutput:
        """Average the flipped-back predictions on ``inputs`` (``(B, C_in, *spatial)``).

        Raises:
            ValueError: an axis out of range, or outputs on another grid than the input (a flip could not be
                inverted).
        """
        self._check_inputs(inputs)
        acc = self._accumulator()
        modes = _eval_modes(network) if isinstance(network, torch.nn.Module) else contextlib.nullcontext()
        with modes, torch.no_grad():
            for dims in self.flips(inputs.ndim - 2):
                x = torch.flip(inputs, dims) if dims else inputs
                out = self.inferer(x, network, *args, **kwargs)
                if torch.is_tensor(out) and out.shape[2:] != inputs.shape[2:]:
                    raise ValueError(
                        f"flip TTA needs outputs on the input grid: input spatial shape {tuple(inputs.shape[2:])}, "
                        f"output {tuple(out.shape[2:])}."
                    )
                acc.add(torch.flip(out, dims) if dims and torch.is_tensor(out) else out)  # add() words a non-tensor
        return acc.result()
