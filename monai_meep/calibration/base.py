# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The interface every post-hoc calibrator shares: streaming ``update``, ``fit``, ``__call__``, JSON persistence.

A calibrator sees network outputs ``x`` of shape ``(B, C, *spatial)`` (logits or probabilities, ``input_type``) with
an ``activation``:

- ``"softmax"``, ``C == 2``: **binary**; one map is fitted on the foreground channel 1 and the output is
  ``[1 - q, q]``.
- ``"softmax"``, ``C >= 3``: **multi-class**; temperature has one ``T`` for all classes, Platt / isotonic are fitted
  one-vs-rest per class and renormalised to sum to 1.
- ``"sigmoid"``: ``C == 1`` is a binary foreground probability; ``C >= 2`` is multi-label (one independent map per
  channel, no renormalisation; temperature shares one ``T``).

Targets are index maps ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)`` (multi-hot for multi-label sigmoid);
``mask`` is an optional boolean ``(B, 1, *spatial)`` selecting the voxels that count.

Probabilities given instead of logits are mapped to task logits ``logit(p)`` (Platt, temperature on sigmoid) or
log-probabilities ``log p`` (temperature on softmax), clipped to ``[-logit_clip, logit_clip]`` so that ``p = 0`` or
``p = 1`` (float32 saturation) stays finite.
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from monai.utils import convert_to_tensor

from monai_meep._version import __version__
from monai_meep.calibration.layout import OutputLayout
from monai_meep.utils import atomic_open

__all__ = [
    "FORMAT_VERSION",
    "Calibrator",
    "CalibratorNotFittedError",
    "load_calibrator",
    "check_number",
]

FORMAT_NAME = "monai_meep.calibrator"
FORMAT_VERSION = 1


def check_number(value: Any, key: str, low: float, high: float, low_open: bool = False) -> float:
    """A saved parameter as a float, refused unless it is a finite number in ``[low, high]`` (``(low, high]``).

    A hand-edited or corrupt calibrator file would otherwise load and turn every output into NaN (Platt ``a = NaN``,
    ``T = 1e-300``) or silently reverse the ranking (``a < 0``).

    Args:
        value: the value read from JSON.
        key: its name in messages, e.g. ``"params 'a'[0]"``.
        low: smallest accepted value.
        high: largest accepted value.
        low_open: exclude ``low`` itself.

    Raises:
        TypeError: not a number (a string, a bool, a list).
        ValueError: NaN / inf, or outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number, got {value!r} ({type(value).__name__}).")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{key} must be finite, got {value!r}.")
    if v < low or v > high or (low_open and v == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{key} = {value!r} must lie in {bracket}{low:g}, {high:g}].")
    return v


class CalibratorNotFittedError(ValueError):
    """Raised when a calibrator is applied (or saved) before ``fit()`` / ``load()``."""


class Calibrator(OutputLayout, ABC):
    """Base class of the post-hoc calibrators (Platt, isotonic, temperature).

    Subclasses implement ``_accumulate`` (stream one batch into bounded state), ``_fit``, ``_apply``, ``_reset``,
    ``_all_reduce``, ``_params`` / ``_load_params`` (the fitted map as JSON-friendly data) and ``get_config``.

    Args:
        num_classes: channel count ``C`` of the network output.
        activation: ``"softmax"`` (mutually exclusive classes, ``C >= 2``) or ``"sigmoid"`` (per channel).
        input_type: default kind of ``x`` given to ``update`` / ``__call__``: ``"logits"`` or ``"probs"``; both accept
            an ``input_type=`` override per call.
        logit_clip: logits (and ``logit(p)``, ``log p`` from probabilities) are clipped to ``[-logit_clip,
            logit_clip]`` where a finite grid or a finite value is needed.

    Raises:
        ValueError: on an unknown activation / input type, or ``softmax`` with fewer than 2 classes.
    """

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Calibrator]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Calibrator._registry[cls.kind] = cls

    def __init__(
        self, num_classes: int, activation: str = "softmax", input_type: str = "logits", logit_clip: float = 30.0
    ) -> None:
        super().__init__(num_classes, activation, logit_clip)
        self.input_type = self._check_input_type(input_type)
        self.fitted = False
        self.fit_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ public API
    def update(self, x: Any, target: Any, mask: Any = None, input_type: str | None = None) -> Calibrator:
        """Stream one batch into the calibrator's bounded state.

        Args:
            x: network outputs ``(B, C, *spatial)``, logits or probabilities (``input_type``).
            target: index map ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
            mask: optional boolean ``(B, 1, *spatial)``; only ``True`` voxels count.
            input_type: overrides the constructor's ``input_type`` for this call.

        Returns:
            self.

        Raises:
            ValueError: on shapes that do not match, NaN / inf, probabilities outside [0, 1], bad labels.
        """
        itype = self._check_input_type(input_type or self.input_type)
        xt = self._check_x(x, itype)
        m = self._check_mask(mask, xt)
        if m is not None:
            t = convert_to_tensor(target, track_meta=False)
            if t.ndim == xt.ndim and t.shape[1] == 1 and t.shape[2:] == xt.shape[2:] and t.shape[0] == xt.shape[0]:
                # labels under the mask do not count (e.g. WMH label 2): only the kept ones are range-checked
                target = torch.where(m, t.to(m.device), torch.zeros((), dtype=t.dtype, device=m.device))
        labels = self._check_target(target, xt)
        with torch.no_grad():
            self._accumulate(xt, labels, m, itype)
        return self

    def fit(self) -> Calibrator:
        """Fit the map on everything streamed since the last ``reset()``.

        Raises:
            ValueError: when no voxel was streamed, or a task saw a single class only.
        """
        self._fit()
        self.fitted = True
        return self

    def __call__(self, x: Any, input_type: str | None = None) -> torch.Tensor:
        """Calibrated probabilities ``(B, C, *spatial)`` (float32, or float64 for float64 input), on ``x``'s device.

        Raises:
            CalibratorNotFittedError: before ``fit()`` / ``load_state_dict()``.
            ValueError: on a channel count other than ``num_classes``, NaN / inf, probabilities outside [0, 1].
        """
        if not self.fitted:
            raise CalibratorNotFittedError(
                f"{type(self).__name__} is not fitted: call update(...) then fit(), or load a saved calibrator."
            )
        itype = self._check_input_type(input_type or self.input_type)
        xt = self._check_x(x, itype)
        if xt.dtype != torch.float64:
            xt = xt.float()
        with torch.no_grad():
            return self._apply(xt, itype)

    def reset(self) -> Calibrator:
        """Drop the streamed state (the fitted map, if any, is kept)."""
        self._reset()
        return self

    def all_reduce(self) -> Calibrator:
        """Combine the streamed state across DDP ranks (call on every rank before ``fit()``)."""
        self._all_reduce()
        return self

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments beyond ``num_classes`` / ``activation`` (saved with the map)."""
        return {"input_type": self.input_type, "logit_clip": self.logit_clip}

    def state_dict(self) -> dict[str, Any]:
        """The fitted map as JSON-serialisable data (format, version, kind, class count, activation, parameters)."""
        if not self.fitted:
            raise CalibratorNotFittedError(f"{type(self).__name__} has no fitted state to save: call fit() first.")
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "activation": self.activation,
            "config": self.get_config(),
            "params": self._params(),
            "fit_info": self.fit_info,
            "monai_meep_version": __version__,
        }

    def load_state_dict(self, state: dict[str, Any]) -> Calibrator:
        """Restore a fitted map from ``state_dict()`` output, checking it belongs to this calibrator.

        The whole state is checked before anything changes: a rejected state leaves the calibrator as it was.

        Raises:
            TypeError: a header key or parameter of the wrong type (``num_classes: "2"``), naming the key.
            ValueError: another format / version, another kind, class count or activation; a non-finite or absurd
                parameter (Platt ``a <= 0``, temperature outside its range, isotonic points outside [0, 1]).
        """
        _check_header(state, "state")
        for key, mine in (("kind", self.kind), ("num_classes", self.num_classes), ("activation", self.activation)):
            if state[key] != mine:
                raise ValueError(f"saved calibrator has {key}={state[key]!r} but this one has {key}={mine!r}.")
        self._load_params(state["params"])
        self.fit_info = dict(state.get("fit_info", {}))
        self.fitted = True
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``state_dict()`` to a JSON file atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        text = json.dumps(self.state_dict(), indent=1)  # serialised first: a failure leaves no file behind
        with atomic_open(path) as f:
            f.write(text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, num_classes: int | None = None) -> Calibrator:
        """Read a calibrator saved by ``save``; on a subclass the saved kind must match it.

        Args:
            path: the JSON file.
            num_classes: when given, the saved class count must equal it.

        Raises:
            TypeError: a key of the wrong type (``num_classes: "2"``), naming the file and the key.
            ValueError: a missing / unreadable file, another format version, kind or class count, an absurd
                parameter; the message names the file.
        """
        path = Path(path)
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"no calibrator file at {str(path)!r}.") from None
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read calibrator file {str(path)!r}: {e}") from e
        _check_header(state, repr(str(path)))
        target_cls = Calibrator._registry.get(state["kind"])
        if target_cls is None:
            raise ValueError(f"{str(path)!r}: unknown calibrator kind {state['kind']!r}.")
        if cls is not Calibrator and not issubclass(target_cls, cls):
            raise ValueError(f"{str(path)!r} holds a {state['kind']!r} calibrator, not {cls.kind!r}.")
        if num_classes is not None and state["num_classes"] != num_classes:
            raise ValueError(f"{str(path)!r} was fitted for {state['num_classes']} classes, expected {num_classes}.")
        try:
            config = state.get("config", {})
            obj = target_cls(num_classes=state["num_classes"], activation=state["activation"], **config)
            return obj.load_state_dict(state)
        except (TypeError, ValueError) as e:  # name the file: the constructor and the checks do not know it
            raise type(e)(f"{str(path)!r}: {e}") from e

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _accumulate(self, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, input_type: str) -> None:
        """Stream validated ``x`` and labels (see ``_check_target``) into the state."""

    @abstractmethod
    def _fit(self) -> None: ...

    @abstractmethod
    def _apply(self, x: torch.Tensor, input_type: str) -> torch.Tensor: ...

    @abstractmethod
    def _reset(self) -> None: ...

    @abstractmethod
    def _all_reduce(self) -> None: ...

    @abstractmethod
    def _params(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_params(self, params: dict[str, Any]) -> None: ...


def _check_header(state: Any, where: str) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise ValueError(f"{where} is not a monai_meep calibrator (missing format={FORMAT_NAME!r}).")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where} has calibrator format_version {state.get('format_version')!r}; this monai_meep "
            f"{__version__} reads version {FORMAT_VERSION}. Refit the calibrator."
        )
    missing = [k for k in ("kind", "num_classes", "activation", "params") if k not in state]
    if missing:
        raise ValueError(f"{where} lacks the keys {missing}.")
    # the types first: num_classes "2" compared with 2 used to read "fitted for 2 classes, expected 2"
    types = {
        "kind": (str,),
        "num_classes": (int,),
        "activation": (str,),
        "params": (dict,),
        "config": (dict,),
        "fit_info": (dict,),
    }
    for key, allowed in types.items():
        if key in state and (isinstance(state[key], bool) or not isinstance(state[key], allowed)):
            raise TypeError(
                f"{where}: key {key!r} must be {allowed[0].__name__}, got {state[key]!r} ({type(state[key]).__name__})."
            )


def load_calibrator(path: str | os.PathLike, num_classes: int | None = None) -> Calibrator:
    """Load any saved calibrator (Platt, isotonic, temperature) from its JSON file; see ``Calibrator.load``."""
    return Calibrator.load(path, num_classes=num_classes)
