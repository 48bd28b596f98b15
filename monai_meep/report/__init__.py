# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""A calibration report for any model's saved predictions: ``python -m monai_meep.report --pred DIR --label DIR``.

Folders of probability maps (NIfTI, one multi-channel file or one file per class; nnU-Net ``.npz``; ``.npy``) and of
labels are paired by case ID (:mod:`.pairing`), read and checked on reader threads (:mod:`.io`), scored one case at
a time into exact histograms (:mod:`.core`), and written as CSV / markdown tables (:mod:`.tables`), figures
(:mod:`.figures`), a mergeable histogram state and one self-contained ``report.html`` (:mod:`.html`); several models
side by side with paired statistics (:mod:`.compare`). See ``docs/report.md``.
"""

from __future__ import annotations

from .api import Report, calibration_report, load_report, merge_reports, write_report
from .io import CaseError, load_case, read_volume
from .pairing import PER_CLASS_PATTERN, CaseFiles, Pairing, Problem, pair_cases

__all__ = [
    "PER_CLASS_PATTERN",
    "CaseError",
    "CaseFiles",
    "Pairing",
    "Problem",
    "Report",
    "calibration_report",
    "load_case",
    "load_report",
    "merge_reports",
    "pair_cases",
    "read_volume",
    "write_report",
]
