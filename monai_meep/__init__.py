# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""monai_meep: calibrated medical image segmentation for MONAI.

MEEP (Maximum Entropy on Erroneous Predictions, Larrazabal et al., MICCAI 2023) losses, exact streaming
calibration metrics, post-hoc calibrators, data loaders / phantoms and MONAI bundles.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
