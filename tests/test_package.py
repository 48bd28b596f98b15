"""The package imports, exposes a version and keeps its public names unique."""

from __future__ import annotations

import re

import monai_meep


def test_version_is_semver():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", monai_meep.__version__)
