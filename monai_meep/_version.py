# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The package version, read from the installed distribution's metadata (``version`` in ``pyproject.toml``).

A module of its own, without imports from the package, so that any module may read the version without importing
the package root (``monai_meep/__init__.py`` imports every subpackage).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["DISTRIBUTION", "__version__"]

#: the distribution name in ``pyproject.toml`` (``pip install monai-meep``)
DISTRIBUTION = "monai-meep"

try:
    __version__: str = version(DISTRIBUTION)
except PackageNotFoundError:  # a source tree on sys.path that was never pip-installed: no metadata to read
    __version__ = "0+unknown"
