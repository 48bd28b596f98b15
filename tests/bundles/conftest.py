"""Fixtures of the bundle tests: a private phantom cache and tiny CPU settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"

# A few seconds per epoch on 2 CPU cores: the smallest phantom grids, a 2-level UNet with 4..8 channels.
TINY = {
    "la": {
        "num_subjects": 8,
        "scale": 0.2,
        "max_epochs": 1,
        "val_interval": 1,
        "channels": [4, 8],
        "strides": [2],
        "batch_size": 2,
        "num_workers": 0,
        "progress": False,
    },
    "wmh": {
        "num_subjects": 6,
        "scale": 0.25,
        "max_epochs": 1,
        "val_interval": 1,
        "channels": [4, 8],
        "strides": [2],
        "batch_size": 4,
        "samples_per_volume": 2,
        "num_workers": 0,
        "progress": False,
    },
}


@pytest.fixture(scope="session", autouse=True)
def phantom_cache(tmp_path_factory):
    """Generate phantoms into a session folder instead of ~/.cache (hermetic; also seen by torchrun children)."""
    old = os.environ.get("MONAI_MEEP_CACHE")
    path = tmp_path_factory.mktemp("meep_cache")
    os.environ["MONAI_MEEP_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MONAI_MEEP_CACHE", None)
    else:
        os.environ["MONAI_MEEP_CACHE"] = old


@pytest.fixture
def tiny():
    return {task: dict(v) for task, v in TINY.items()}


def error_chain(exc: BaseException) -> str:
    """All messages of an exception and its causes (MONAI wraps errors raised inside config expressions)."""
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def la_image_folder(items, dest: Path) -> Path:
    """A folder of "new" LA images for inference.json: ``<dest>/<ID>/mri_norm2.h5`` linked to the items' files."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in items:
        (dest / item["subject"]).mkdir()
        (dest / item["subject"] / "mri_norm2.h5").symlink_to(item["image"])
    return dest
