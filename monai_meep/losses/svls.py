# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Spatially varying label smoothing (SVLS; Islam & Glocker, IPMI 2021, arXiv:2104.05788).

Cross-entropy against a soft target: the one-hot labels smoothed per channel by a small Gaussian-derived kernel,
so a voxel near a boundary gets a target shared with its neighbours' classes, and a voxel inside an organ keeps a
one-hot target. MONAI has no SVLS loss (its ``NACLLoss`` smooths the one-hot the same way but penalises logits, not
CE), so this is written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, StrEnum, look_up_option

from monai_meep.losses._targets import IndexTargetLoss, one_hot_labels, reduce_voxels
from monai_meep.losses.functional import upcast

__all__ = ["SVLSKernel", "SVLSLoss", "svls_kernel"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class SVLSKernel(StrEnum):
    """The smoothing kernel of :class:`SVLSLoss`.

    - ``"svls"``: the paper's kernel: a normalised Gaussian whose centre weight is then set to the sum of the other
      weights, and normalised again, so the centre voxel keeps weight 1/2 (what the authors' code does);
    - ``"gaussian"``: the plain normalised Gaussian.
    """

    SVLS = "svls"
    GAUSSIAN = "gaussian"


def svls_kernel(
    spatial_dims: int, kernel_size: int = 3, sigma: float = 1.0, kernel: SVLSKernel | str = SVLSKernel.SVLS
) -> torch.Tensor:
    """The SVLS smoothing kernel of shape ``(kernel_size,) * spatial_dims``, float64, summing to 1.

    ``w(x) = exp(-|x - centre|^2 / (2 sigma^2))`` over the integer grid, normalised; for ``kernel="svls"`` the centre
    weight is replaced by the sum of the others (``1 - w(centre)``) and the kernel normalised again, which gives the
    centre exactly 1/2.

    Args:
        spatial_dims: 1, 2 or 3.
        kernel_size: odd edge length (3 in the paper: 3x3 in 2D, 3x3x3 in 3D).
        sigma: Gaussian standard deviation in voxels (1 in the paper).
        kernel: ``"svls"`` or ``"gaussian"`` (:class:`SVLSKernel`).

    Returns:
        the kernel.

    Raises:
        ValueError: ``spatial_dims`` not in 1..3, an even or non-positive ``kernel_size``, ``sigma <= 0``, an unknown
            ``kernel``.

    Example:
        >>> float(svls_kernel(2)[1, 1])
        0.5
    """
    kind = look_up_option(kernel, SVLSKernel)
    if spatial_dims not in _CONV:
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size!r}.")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}.")
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    sq = sum(torch.meshgrid(*([offsets**2] * spatial_dims), indexing="ij"))
    weights = torch.exp(-sq / (2.0 * float(sigma) ** 2))
    weights = weights / weights.sum()
    if kind == SVLSKernel.SVLS and kernel_size > 1:
        centre = (kernel_size // 2,) * spatial_dims
        weights[centre] = 1.0 - weights[centre]
        weights = weights / weights.sum()
    return weights


class SVLSLoss(IndexTargetLoss):
    """Cross-entropy against spatially varying smoothed labels (SVLS, Islam & Glocker, IPMI 2021).

    ``q = conv(onehot(y), k)`` per channel with the kernel :func:`svls_kernel` (3x3 / 3x3x3, sigma 1), renormalised
    over the channels; the loss per voxel is ``-sum_k q_k log softmax(l)_k``.

    **Borders** are padded by replicating the edge voxels (as the authors' code), so an image border is not read as
    a boundary with an absent class and an interior-only patch gets no smoothing at its edge. **Ignored voxels**
    (``ignore_index``) have an all-zero one-hot: they add no class to their neighbours' targets, and the
    renormalisation over channels spreads their weight over the classes that are there. Without ignored voxels the
    sum over channels is already 1 and renormalising changes nothing.

    ``softmax = True`` declares the activation to :class:`~monai_meep.losses.MEEPLoss`.

    Args:
        kernel_size: odd edge length of the kernel. Defaults to 3.
        sigma: Gaussian standard deviation in voxels. Defaults to 1.
        kernel: ``"svls"`` (the paper's, centre weight 1/2) or ``"gaussian"`` (plain normalised Gaussian).
        ignore_index: label left out of the loss.
        reduction: ``"mean"`` (over labelled voxels), ``"sum"``, or ``"none"`` (``(B, 1, *spatial)``).

    Raises:
        ValueError: a bad kernel parameter (see :func:`svls_kernel`), an unknown ``reduction``; at call time more
            than 3 spatial dims, a target that does not match the input, labels outside ``[0, C)``.
        TypeError: at call time, a non-tensor or non-floating input, a non-tensor target.

    Example:
        >>> loss = SVLSLoss()
        >>> loss(torch.randn(2, 3, 8, 8, 8), torch.randint(0, 3, (2, 1, 8, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        kernel_size: int = 3,
        sigma: float = 1.0,
        kernel: SVLSKernel | str = SVLSKernel.SVLS,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        self.kernel_size = kernel_size
        self.sigma = float(sigma)
        self.kernel = look_up_option(kernel, SVLSKernel).value
        svls_kernel(1, kernel_size, sigma, kernel)  # check the parameters now, not at the first call
        self._weights = {dims: svls_kernel(dims, kernel_size, sigma, kernel) for dims in _CONV}

    def smoothed_target(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The SVLS target ``q`` ``(B, C, *spatial)`` (no gradient) of class indices with their valid mask."""
        dims = input.ndim - 2
        if dims not in _CONV:
            raise ValueError(f"SVLSLoss supports 1 to 3 spatial dims, got input of shape {tuple(input.shape)}.")
        n_cls = input.shape[1]
        dtype = upcast(input).dtype
        onehot = one_hot_labels(labels, valid, n_cls, dtype)
        weight = self._weights[dims].to(device=input.device, dtype=dtype)
        weight = weight.expand(n_cls, 1, *weight.shape)  # one depthwise filter per class channel
        pad = [self.kernel_size // 2] * (2 * dims)
        smoothed = _CONV[dims](F.pad(onehot, pad, mode="replicate"), weight, groups=n_cls)
        total = smoothed.sum(1, keepdim=True)
        return smoothed / total.clamp_min(torch.finfo(dtype).tiny)

    def _loss(self, input: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        q = self.smoothed_target(input, labels, valid)
        logp = torch.log_softmax(input.to(q.dtype), dim=1)
        return reduce_voxels(-(q * logp).sum(1), valid, self.reduction)
