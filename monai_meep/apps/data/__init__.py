# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The paper's data: real-layout loaders (WMH challenge, LA UA-MT / Decathlon), splits, the paper's transforms.

``prepare_dataset`` reads a data set in one of the real layouts or, without one, generates and caches the phantom
of :mod:`monai_meep.apps.phantoms` in the same layout.

Example:
    >>> from monai_meep.apps.data import prepare_dataset, la_transforms, roi_size_for_scale
    >>> dl = prepare_dataset("la", num_subjects=12, scale=0.3)  # doctest: +SKIP
    >>> train_t = la_transforms("train", crop_size=roi_size_for_scale("la", 0.3))  # doctest: +SKIP
"""

from __future__ import annotations

from .datasets import PHANTOM_VERSION, cache_root, default_phantom_dir, load_datalist_file, prepare_dataset
from .la import la_datalist, la_split
from .readers import LAH5Reader
from .transforms import LA_CROP_SIZE, WMH_PATCH_SIZE, la_transforms, roi_size_for_scale, wmh_transforms
from .wmh import wmh_datalist, wmh_split

__all__ = [
    "prepare_dataset",
    "wmh_datalist",
    "la_datalist",
    "wmh_split",
    "la_split",
    "wmh_transforms",
    "la_transforms",
    "roi_size_for_scale",
    "LAH5Reader",
    "load_datalist_file",
    "default_phantom_dir",
    "cache_root",
    "PHANTOM_VERSION",
    "WMH_PATCH_SIZE",
    "LA_CROP_SIZE",
]
