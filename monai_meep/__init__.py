# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""monai_meep: calibrated medical image segmentation for MONAI.

MEEP (Maximum Entropy on Erroneous Predictions, Larrazabal et al., MICCAI 2023) losses, exact streaming
calibration metrics, Ignite handlers, post-hoc calibrators and a calibration report: the reusable **library**.
The paper's **application** (the WMH / LA loaders and phantoms, the paper's loss settings, the bundles' Python
support and the experiment runner) lives in :mod:`monai_meep.apps`; the library never imports it
(docs/architecture.md).

``import monai_meep`` loads every library subpackage (as ``import monai`` does), so a bundle config resolves
``monai_meep.losses.MEEPLoss`` and the rest after ``"$import monai_meep"``; the application is imported by name
(``"$import monai_meep.apps.data"``, ``"$import monai_meep.apps.bundle.support as bs"``). :mod:`monai_meep.kernels`
(Triton) and :mod:`monai_meep.report` load on demand.
"""

from __future__ import annotations

from . import calibration, handlers, inferers, losses, metrics, transforms, visualize
from ._version import __version__

__all__ = [
    "__version__",
    "calibration",
    "handlers",
    "inferers",
    "losses",
    "metrics",
    "transforms",
    "visualize",
]
