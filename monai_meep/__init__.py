# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""monai_meep: calibrated medical image segmentation for MONAI.

MEEP (Maximum Entropy on Erroneous Predictions, Larrazabal et al., MICCAI 2023) losses, exact streaming
calibration metrics, post-hoc calibrators, data loaders / phantoms and MONAI bundles.

``import monai_meep`` loads every public subpackage (as ``import monai`` does), so a bundle config needs only
``"imports": ["$import monai_meep"]`` to resolve ``monai_meep.losses.MEEPLoss``, ``monai_meep.data.prepare_dataset``
and the rest. :mod:`monai_meep.kernels` (Triton) and :mod:`monai_meep.experiments` (the runners) load on demand.
"""

from __future__ import annotations

from . import calibration, data, handlers, inferers, losses, metrics, transforms, visualize
from ._version import __version__

__all__ = [
    "__version__",
    "calibration",
    "data",
    "handlers",
    "inferers",
    "losses",
    "metrics",
    "transforms",
    "visualize",
]
