# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The Python side of the bundles in ``bundles/``: what their configs import, and running them from Python.

- :mod:`.support`: helpers the configs call (data set resolution, device / DDP settings, resume, input checks),
  ``"$import monai_meep.apps.bundle.support as bs"``;
- :mod:`.checks`: the configs' input checks and the last-line error message, ``... .checks as checks``;
- :mod:`.uncertainty`: the ``--uncertainty`` baselines of ``evaluate.json`` (ensemble, MC dropout, TTA),
  ``... .uncertainty as uq``;
- :mod:`.runner`: ``run_bundle(task, workflow, overrides)`` and the bundle folders (``bundle_dir``).
"""

from __future__ import annotations

__all__ = ["bundle_path"]


def bundle_path(task: str) -> str:
    """Folder of the bundle for ``task`` (``"wmh"`` or ``"la"``); see :func:`.runner.bundle_dir`."""
    from monai_meep.apps.bundle.runner import bundle_dir

    return str(bundle_dir(task))
