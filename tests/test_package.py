"""The package imports, exposes a version and keeps its public names unique."""

from __future__ import annotations

import re

import monai_meep


def test_version_is_semver():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", monai_meep.__version__)


def test_version_comes_from_the_installed_metadata(monkeypatch):
    import importlib
    import importlib.metadata

    from monai_meep import _version

    assert _version.DISTRIBUTION == "monai-meep"  # the [project] name in pyproject.toml
    assert monai_meep.__version__ == importlib.metadata.version("monai-meep") == _version.__version__

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    try:
        assert importlib.reload(_version).__version__ == "0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(_version)
    assert _version.__version__ == monai_meep.__version__


def test_calibration_base_does_not_import_the_package_root():
    """``calibration/base.py`` reads the version from ``monai_meep._version``, not ``import monai_meep``."""
    import ast
    import inspect

    from monai_meep.calibration import base

    tree = ast.parse(inspect.getsource(base))
    roots = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    froms = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "monai_meep" not in roots and "monai_meep" not in froms


def test_wheel_ships_every_bundle_file(tmp_path, repo_root):
    """A non-editable install finds the bundles under <prefix>/share/monai_meep/bundles (see bundle_dir)."""
    import subprocess
    import sys
    import zipfile

    import pytest

    pytest.importorskip("setuptools")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*cmd, str(repo_root)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("monai_meep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.split(".data/data/share/monai_meep/", 1)[1] for n in names if ".data/data/share/monai_meep/" in n}
    expected = {p.relative_to(repo_root).as_posix() for p in (repo_root / "bundles").rglob("*") if p.is_file()}
    assert expected and shipped == expected
