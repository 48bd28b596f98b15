# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Uncertainty maps from class probabilities, as MONAI dictionary transforms.

``PredictiveEntropyd`` turns a probability map (``C`` channels summing to one, or one sigmoid channel) into the
voxel-wise Shannon entropy in nats; ``ForegroundProbabilityd`` keeps the foreground channel of a 2-channel softmax so
that a probability map is written as one 3D volume. Both keep the ``MetaTensor`` metadata (affine, spacing,
``applied_operations``) so ``Invertd`` and ``SaveImaged`` put the maps back in the original image space.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

__all__ = ["ForegroundProbabilityd", "PredictiveEntropyd", "predictive_entropy"]


def predictive_entropy(probs: torch.Tensor, normalize: bool = False, channel_dim: int = 0) -> torch.Tensor:
    """Shannon entropy ``-sum_k p_k log p_k`` (nats) over ``channel_dim``, keeping that dimension with size 1.

    A single channel is read as a sigmoid foreground probability (Bernoulli entropy). ``0 log 0`` is 0.

    Args:
        probs: probabilities, ``(C, *spatial)`` by default; values in [0, 1].
        normalize: divide by ``log K`` (``K = C``, or 2 for one channel) so the map lies in [0, 1].
        channel_dim: the class dimension.

    Returns:
        float32 tensor with ``channel_dim`` of size 1.

    Raises:
        ValueError: when the probabilities lie outside [0, 1] or are not finite.

    Example::

        >>> predictive_entropy(torch.tensor([[0.5], [0.5]])).item()  # log 2
        0.6931...
    """
    p = convert_to_tensor(probs, track_meta=False).float()
    if p.ndim < 2:
        raise ValueError(f"probs must be (C, *spatial) with at least one spatial dim, got shape {tuple(p.shape)}.")
    if not torch.isfinite(p).all() or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ValueError(
            f"probs must be finite probabilities in [0, 1] (apply softmax/sigmoid first); "
            f"got range [{p.min().item():.4g}, {p.max().item():.4g}]."
        )
    p = p.clamp(0.0, 1.0)
    if p.shape[channel_dim] == 1:
        p = torch.cat([1.0 - p, p], dim=channel_dim)
    num_classes = p.shape[channel_dim]
    # xlogy gives exactly 0 for p == 0 (no log(0) -> NaN); float32 is enough for a map that is only displayed/saved.
    ent = -torch.special.xlogy(p, p).sum(dim=channel_dim, keepdim=True)
    if normalize:
        ent = ent / torch.log(torch.tensor(float(num_classes)))
    return ent.clamp_min(0.0)


def _with_meta(out: torch.Tensor, like: object) -> torch.Tensor:
    """Copy the metadata of ``like`` (a MetaTensor, if it is one) onto ``out``."""
    if isinstance(like, MetaTensor):
        return MetaTensor(out, meta=like.meta, applied_operations=list(like.applied_operations))
    return out


class PredictiveEntropyd(MapTransform):
    """Write the voxel-wise predictive entropy of ``keys`` (probabilities, ``(C, *spatial)``) to ``output_keys``.

    Args:
        keys: keys of probability maps (after ``Activationsd``; e.g. ``"prob"`` from ``CopyItemsd``).
        output_keys: where to write each entropy map; defaults to ``"<key>_entropy"``.
        normalize: divide by ``log K`` so the map lies in [0, 1] (1 = uniform prediction).
        allow_missing_keys: don't raise if a key is absent.

    Example::

        >>> t = PredictiveEntropyd(keys="prob", output_keys="entropy")
        >>> out = t({"prob": torch.softmax(torch.randn(2, 8, 8, 8), 0)})
        >>> out["entropy"].shape
        torch.Size([1, 8, 8, 8])
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_keys: KeysCollection | None = None,
        normalize: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_keys is None:
            output_keys = [f"{k}_entropy" for k in self.keys]
        output_keys = [output_keys] if isinstance(output_keys, str) else list(output_keys)
        if len(output_keys) != len(self.keys):
            raise ValueError(f"output_keys {output_keys} must match keys {list(self.keys)} one to one.")
        self.output_keys = output_keys
        self.normalize = normalize

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, out_key in zip(self.keys, self.output_keys, strict=True):
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise KeyError(f"key '{key}' not in data (available: {sorted(map(str, d))}).")
            d[out_key] = _with_meta(predictive_entropy(d[key], normalize=self.normalize), d[key])
        return d


class ForegroundProbabilityd(MapTransform):
    """Keep one channel (default: the foreground, channel 1) of a probability map, with its metadata.

    Args:
        keys: keys of ``(C, *spatial)`` probability maps.
        channel: the channel to keep (kept as a size-1 channel dimension).
        output_keys: where to write; defaults to overwriting ``keys``.
        allow_missing_keys: don't raise if a key is absent.

    Example::

        >>> ForegroundProbabilityd("prob")({"prob": torch.rand(2, 4, 4)})["prob"].shape
        torch.Size([1, 4, 4])
    """

    def __init__(
        self,
        keys: KeysCollection,
        channel: int = 1,
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        out: Sequence[Hashable] = (
            self.keys if output_keys is None else ([output_keys] if isinstance(output_keys, str) else list(output_keys))
        )
        if len(out) != len(self.keys):
            raise ValueError(f"output_keys {list(out)} must match keys {list(self.keys)} one to one.")
        self.output_keys = list(out)
        self.channel = channel

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            x = d[key]
            if x.shape[0] == 1:
                d[out_key] = x  # already a single (sigmoid) foreground channel
                continue
            if not -x.shape[0] <= self.channel < x.shape[0]:
                raise ValueError(f"channel {self.channel} out of range for '{key}' with shape {tuple(x.shape)}.")
            d[out_key] = x[self.channel : self.channel + 1]
        return d
