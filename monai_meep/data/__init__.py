# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Data: real-layout loaders (WMH challenge, LA UA-MT / Decathlon), the paper's transforms, realistic phantoms.

Example:
    >>> from monai_meep.data import prepare_dataset, la_transforms, roi_size_for_scale
    >>> dl = prepare_dataset("la", num_subjects=12, scale=0.3)  # doctest: +SKIP
    >>> train_t = la_transforms("train", crop_size=roi_size_for_scale("la", 0.3))  # doctest: +SKIP
"""

from __future__ import annotations

from .datasets import PHANTOM_VERSION, cache_root, default_phantom_dir, load_datalist_file, prepare_dataset
from .la import la_datalist, la_split
from .phantoms import PhantomGenerationError, generate_la_phantom, generate_wmh_phantom
from .readers import LAH5Reader
from .transforms import LA_CROP_SIZE, WMH_PATCH_SIZE, la_transforms, roi_size_for_scale, wmh_transforms
from .wmh import wmh_datalist, wmh_split

__all__ = [
    "PhantomGenerationError",
    "prepare_dataset",
    "wmh_datalist",
    "la_datalist",
    "wmh_split",
    "la_split",
    "wmh_transforms",
    "la_transforms",
    "roi_size_for_scale",
    "generate_wmh_phantom",
    "generate_la_phantom",
    "LAH5Reader",
    "load_datalist_file",
    "default_phantom_dir",
    "cache_root",
    "PHANTOM_VERSION",
    "WMH_PATCH_SIZE",
    "LA_CROP_SIZE",
]
