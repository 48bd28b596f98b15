# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Post-hoc calibrators fitted on validation data with the network frozen (Platt, isotonic, temperature).

All share :class:`Calibrator`: ``update(x, target, mask=None)`` per batch in bounded memory, ``fit()``, ``__call__``,
``state_dict()`` / ``load_state_dict()``, ``save(path)`` / ``load(path)`` (small versioned JSON). Apply a saved one
with :class:`CalibrateProbabilitiesd`; fit one inside a MONAI / Ignite evaluator with :class:`CalibratorFitHandler`.
"""

from __future__ import annotations

from .base import FORMAT_VERSION, Calibrator, CalibratorNotFittedError, load_calibrator
from .handlers import CalibratorFitHandler
from .isotonic import IsotonicCalibration
from .logit_histogram import LogitHistogram
from .platt import PlattScaling
from .temperature import TemperatureScaling
from .transforms import CalibrateProbabilities, CalibrateProbabilitiesd

__all__ = [
    "FORMAT_VERSION",
    "CalibrateProbabilities",
    "CalibrateProbabilitiesd",
    "Calibrator",
    "CalibratorFitHandler",
    "CalibratorNotFittedError",
    "IsotonicCalibration",
    "LogitHistogram",
    "PlattScaling",
    "TemperatureScaling",
    "load_calibrator",
]
