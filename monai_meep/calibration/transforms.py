# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Apply a fitted post-hoc calibrator in MONAI inference post-processing.

Typical chain (design: keep a probability copy before discretising)::

    Activationsd(keys="pred", softmax=True)
    CopyItemsd(keys="pred", names="prob")
    CalibrateProbabilitiesd(keys="prob", calibrator="models/calibrator_platt.json")
    AsDiscreted(keys="pred", argmax=True)

Items are channel-first ``(C, *spatial)`` as post-transforms see them after decollation (``batched=True`` for
``(B, C, *spatial)``). ``MetaTensor`` metadata (affine, ``applied_operations``) is kept, so ``Invertd`` /
``SaveImaged`` still work on the calibrated map.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

from monai_meep.calibration.base import Calibrator, load_calibrator

__all__ = ["CalibrateProbabilities", "CalibrateProbabilitiesd"]


def _resolve(calibrator: Calibrator | str | os.PathLike, num_classes: int | None) -> Calibrator:
    if isinstance(calibrator, Calibrator):
        if not calibrator.fitted:
            raise ValueError(f"the {type(calibrator).__name__} given to the transform is not fitted (call fit()).")
        if num_classes is not None and calibrator.num_classes != num_classes:
            raise ValueError(f"calibrator was fitted for {calibrator.num_classes} classes, expected {num_classes}.")
        return calibrator
    if isinstance(calibrator, (str, os.PathLike)):
        return load_calibrator(calibrator, num_classes=num_classes)
    raise ValueError(f"calibrator must be a fitted Calibrator or a path to its JSON file, got {type(calibrator)}.")


class CalibrateProbabilities(Transform):
    """Map network outputs through a fitted calibrator; returns probabilities of the same shape.

    Args:
        calibrator: a fitted :class:`Calibrator`, or the path of a JSON file written by ``Calibrator.save``
            (loaded once, here).
        input_type: ``"probs"`` (default: post-activation probabilities) or ``"logits"``.
        batched: inputs are ``(B, C, *spatial)`` rather than one channel-first item ``(C, *spatial)``.
        num_classes: optional check of the calibrator's class count.

    Raises:
        ValueError: unfitted calibrator, unreadable / mismatched file, or an input the calibrator rejects.
    """

    def __init__(
        self,
        calibrator: Calibrator | str | os.PathLike,
        input_type: str = "probs",
        batched: bool = False,
        num_classes: int | None = None,
    ) -> None:
        self.calibrator = _resolve(calibrator, num_classes)
        self.input_type = Calibrator._check_input_type(input_type)
        self.batched = batched

    def __call__(self, img: Any) -> Any:
        x = convert_to_tensor(img, track_meta=False)
        out = self.calibrator(x if self.batched else x.unsqueeze(0), input_type=self.input_type)
        out = out if self.batched else out[0]
        return convert_to_dst_type(out, img, dtype=out.dtype)[0]


class CalibrateProbabilitiesd(MapTransform):
    """Dictionary version of :class:`CalibrateProbabilities`.

    Args:
        keys: keys of the items to calibrate (``"prob"`` by default, the probability copy).
        calibrator: fitted calibrator or path to its JSON file.
        input_type: ``"probs"`` or ``"logits"``.
        batched: items are ``(B, C, *spatial)``.
        num_classes: optional check of the calibrator's class count.
        allow_missing_keys: skip absent keys.

    Example::

        >>> post = Compose([
        ...     Activationsd(keys="pred", softmax=True),
        ...     CopyItemsd(keys="pred", names="prob"),
        ...     CalibrateProbabilitiesd(keys="prob", calibrator="models/calibrator_isotonic.json"),
        ... ])
    """

    def __init__(
        self,
        keys: KeysCollection = "prob",
        calibrator: Calibrator | str | os.PathLike | None = None,
        input_type: str = "probs",
        batched: bool = False,
        num_classes: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if calibrator is None:
            raise ValueError("CalibrateProbabilitiesd needs calibrator= (a fitted Calibrator or a JSON path).")
        self.converter = CalibrateProbabilities(calibrator, input_type, batched, num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
