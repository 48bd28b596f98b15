# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Output layouts shared by the calibrators: validation of ``(x, target, mask)`` and one-vs-rest views of ``x``.

A network output ``(B, C, *spatial)`` with an activation is one of three layouts: **binary** (2-channel softmax, its
foreground channel 1; or 1 sigmoid channel), **multiclass** (softmax, ``C >= 3``: ``C`` one-vs-rest tasks) or
**multilabel** (sigmoid, ``C >= 2``: one task per channel). This module turns logits or probabilities into the
per-task logits / probabilities / labels that the calibrators fit, and per-task results back into ``(B, C, *)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.utils import convert_to_tensor

from monai_meep.enums import Activation, InputType, look_up

__all__ = ["OutputLayout"]


class OutputLayout:
    """Channel layout of a network output and the conversions between it and one-dimensional calibration tasks.

    Args:
        num_classes: channel count ``C``.
        activation: ``"softmax"`` (``C >= 2``) or ``"sigmoid"``.
        logit_clip: logits (and ``logit(p)`` / ``log p`` from probabilities) are clipped to ``[-logit_clip,
            logit_clip]`` where a finite value is needed.

    Raises:
        TypeError: ``activation`` not a string.
        ValueError: on an unknown activation, ``softmax`` with fewer than 2 classes, a non-positive clip.
    """

    def __init__(self, num_classes: int, activation: str = "softmax", logit_clip: float = 30.0) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
        activation = look_up(activation, Activation, "activation")
        if activation == "softmax" and num_classes < 2:
            raise ValueError("activation='softmax' needs num_classes >= 2; use activation='sigmoid' for 1 channel.")
        if not (math.isfinite(logit_clip) and logit_clip > 0):
            raise ValueError(f"logit_clip must be a positive finite number, got {logit_clip!r}.")
        self.num_classes = num_classes
        self.activation = activation
        self.logit_clip = float(logit_clip)

    @property
    def mode(self) -> str:
        """``"binary"``, ``"multiclass"`` (softmax, C >= 3) or ``"multilabel"`` (sigmoid, C >= 2)."""
        if (self.activation == "softmax" and self.num_classes == 2) or self.num_classes == 1:
            return "binary"
        return "multiclass" if self.activation == "softmax" else "multilabel"

    @property
    def num_tasks(self) -> int:
        """Number of one-dimensional maps fitted: 1 for binary, ``C`` otherwise (one-vs-rest / per channel)."""
        return 1 if self.mode == "binary" else self.num_classes

    @staticmethod
    def _check_input_type(input_type: InputType | str) -> InputType:
        return look_up(input_type, InputType, "input_type")

    def _check_x(self, x: Any, input_type: str) -> torch.Tensor:
        x = convert_to_tensor(x, track_meta=False)
        if x.ndim < 2 or x.shape[1] != self.num_classes:
            raise ValueError(
                f"expected x of shape (B, {self.num_classes}, *spatial) ({self.activation} {input_type}), "
                f"got {tuple(x.shape)}."
            )
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # AMP outputs: logsumexp / log in half precision would lose the tails
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"x ({input_type}) contains NaN or inf; shape {tuple(x.shape)}.")
        if input_type == "probs" and x.numel() and (x.min() < -1e-5 or x.max() > 1 + 1e-5):
            raise ValueError(
                f"input_type='probs' needs values in [0, 1], got range [{x.min().item():.4g}, {x.max().item():.4g}]"
                " (pass input_type='logits' for raw network outputs)."
            )
        return x.clamp(0.0, 1.0) if input_type == "probs" else x

    def task_logits(self, x: torch.Tensor, input_type: str, clip: bool = True) -> torch.Tensor:
        """One-vs-rest logits ``(B, num_tasks, *spatial)``: ``log(p_c / (1 - p_c))`` per task.

        From softmax logits the class-``c`` logit is ``z_c - logsumexp_{k != c} z_k`` (exact, no ``log(1 - p)``
        cancellation); from softmax probabilities ``log p_c - log(sum_{k != c} p_k)``, from sigmoid ones
        ``log p - log1p(-p)``. Clipped to ``[-logit_clip, logit_clip]`` unless
        ``clip=False`` (then only the infinities of saturated probabilities are clipped).
        """
        lim = self.logit_clip
        if input_type == "probs":
            if self.activation == "sigmoid":
                out = torch.log(x) - torch.log1p(-x)
            else:
                # 1 - p_c as the sum of the other channels: a float32 p_c rounds to 1 long before they underflow
                if self.mode == "binary":
                    out = torch.log(x[:, 1:2]) - torch.log(x[:, 0:1])
                else:
                    rest = torch.stack([torch.cat([x[:, :c], x[:, c + 1 :]], 1).sum(1) for c in range(x.shape[1])], 1)
                    out = torch.log(x) - torch.log(rest)
                out = torch.nan_to_num(out, nan=0.0)  # 0 / 0 (all channels 0) is no evidence either way
            return out.clamp(-lim, lim)  # p == 0 or 1 gives -inf / inf: always clipped
        if self.activation == "sigmoid":
            out = x
        elif self.mode == "binary":
            out = x[:, 1:2] - x[:, 0:1]
        else:
            out = torch.stack(
                [
                    x[:, c] - torch.logsumexp(torch.cat([x[:, :c], x[:, c + 1 :]], dim=1), dim=1)
                    for c in range(x.shape[1])
                ],
                dim=1,
            )
        return out.clamp(-lim, lim) if clip else out

    def class_logits(self, x: torch.Tensor, input_type: str) -> torch.Tensor:
        """Logits on the activation's own scale: ``x`` itself, or ``log p`` (softmax) / ``logit(p)`` (sigmoid)."""
        if input_type == "logits":
            return x
        if self.activation == "sigmoid":
            return self.task_logits(x, "probs")
        return torch.log(x.clamp_min(math.exp(-self.logit_clip)))

    def class_probs(self, x: torch.Tensor, input_type: str) -> torch.Tensor:
        """Probabilities ``(B, C, *spatial)`` under the activation."""
        if input_type == "probs":
            return x
        return torch.softmax(x, dim=1) if self.activation == "softmax" else torch.sigmoid(x)

    def _check_target(self, target: Any, x: torch.Tensor) -> torch.Tensor:
        """Validate ``target`` and return labels: class index ``(B, 1, *)`` (softmax) or multi-hot ``(B, C, *)``."""
        t = convert_to_tensor(target, track_meta=False).to(x.device)
        spatial = tuple(x.shape[2:])
        if t.ndim != x.ndim or t.shape[0] != x.shape[0] or tuple(t.shape[2:]) != spatial:
            raise ValueError(
                f"target must be (B, 1, *spatial) or (B, {self.num_classes}, *spatial) matching x {tuple(x.shape)}, "
                f"got {tuple(t.shape)}."
            )
        if t.is_floating_point() and (not bool(torch.isfinite(t).all()) or bool((t != torch.round(t)).any())):
            raise ValueError("target must hold finite integer labels (index map) or 0/1 (one-hot).")
        t = t.long()
        if self.activation == "softmax":
            if t.shape[1] == self.num_classes and self.num_classes > 1 and bool(((t == 0) | (t == 1)).all()):
                if bool((t.sum(1) != 1).any()):
                    raise ValueError("one-hot target must have exactly one 1 per voxel over the channels.")
                return t.argmax(dim=1, keepdim=True)
            if t.shape[1] != 1:
                raise ValueError(f"target has {t.shape[1]} channels; expected 1 (index) or {self.num_classes}.")
            if t.numel() and (t.min() < 0 or t.max() >= self.num_classes):
                raise ValueError(
                    f"target labels must lie in [0, {self.num_classes - 1}], got [{t.min().item()}, {t.max().item()}]"
                    " (mask out ignored labels, e.g. WMH label 2, with `mask`)."
                )
            return t
        if t.shape[1] != self.num_classes:
            raise ValueError(
                f"sigmoid targets need one 0/1 channel per output channel: expected (B, {self.num_classes}, *spatial),"
                f" got {tuple(t.shape)}."
            )
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise ValueError(f"sigmoid targets must be 0/1, got range [{t.min().item()}, {t.max().item()}].")
        return t

    def task_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Boolean one-vs-rest labels ``(B, num_tasks, *spatial)`` from ``_check_target``'s output."""
        if self.activation == "sigmoid":
            return labels.bool()
        if self.mode == "binary":
            return labels == 1
        classes = torch.arange(self.num_classes, device=labels.device).view(1, -1, *([1] * (labels.ndim - 2)))
        return labels == classes

    @staticmethod
    def _check_mask(mask: Any, x: torch.Tensor) -> torch.Tensor | None:
        if mask is None:
            return None
        m = convert_to_tensor(mask, track_meta=False).to(x.device)
        if m.ndim != x.ndim or m.shape[0] != x.shape[0] or m.shape[1] != 1 or m.shape[2:] != x.shape[2:]:
            raise ValueError(f"mask must be (B, 1, *spatial) = {(x.shape[0], 1, *x.shape[2:])}, got {tuple(m.shape)}.")
        return m.bool()

    @staticmethod
    def flatten_voxels(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, K, *spatial)`` -> ``(K, N)`` over the selected voxels (all when ``mask`` is None)."""
        flat = t.movedim(1, 0).reshape(t.shape[1], -1)
        return flat if mask is None else flat[:, mask.reshape(-1)]

    def _task_output(self, q: torch.Tensor, log_q: torch.Tensor | None = None) -> torch.Tensor:
        """Assemble per-task calibrated probabilities ``(B, T, *)`` into the output layout ``(B, C, *)``.

        Binary softmax gives ``[1 - q, q]``; multi-class renormalises the one-vs-rest values (from ``log_q`` via a
        softmax when given, which cannot underflow to 0 / 0); sigmoid keeps ``q``.
        """
        if self.activation == "sigmoid":
            return q
        if self.mode == "binary":
            return torch.cat([1.0 - q, q], dim=1)
        if log_q is not None:
            return torch.softmax(log_q, dim=1)
        total = q.sum(dim=1, keepdim=True)
        # every one-vs-rest map can be 0 at once only where no class was ever observed; fall back to uniform there
        safe = total > 0
        return torch.where(safe, q / torch.where(safe, total, torch.ones_like(total)), 1.0 / self.num_classes)
