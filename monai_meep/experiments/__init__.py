# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Experiments driven through the MONAI bundles: ``python -m monai_meep.experiments {compare,table1}``.

``bundle_support`` holds the small helpers the bundle configs call (data set resolution, device / DDP settings,
resume, input checks); ``bundle_runner`` runs a bundle workflow programmatically; ``compare`` is the main job
(Dice vs Dice + MEEP on a phantom, side by side).
"""

from __future__ import annotations

__all__ = ["bundle_path"]


def bundle_path(task: str) -> str:
    """Folder of the bundle for ``task`` (``"wmh"`` or ``"la"``); see :func:`bundle_runner.bundle_dir`."""
    from monai_meep.experiments.bundle_runner import bundle_dir

    return str(bundle_dir(task))
