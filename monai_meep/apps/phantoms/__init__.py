# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Realistic, deterministic WMH and LA phantoms written in the real data sets' layouts.

CLI: ``python -m monai_meep.apps.phantoms {wmh,la} --out DIR [--subjects N --seed S --scale F --workers W --figure]``.
"""

from __future__ import annotations

from ._parallel import PhantomGenerationError
from .la import generate_la_phantom
from .wmh import generate_wmh_phantom

__all__ = ["generate_wmh_phantom", "generate_la_phantom", "PhantomGenerationError"]
