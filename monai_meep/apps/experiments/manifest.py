# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Bookkeeping of experiment runs: atomic files, per-run locks and markers, and the environment of a run.

Several runner processes may work in one output folder at the same time (on one machine: a GPU shared by a few
workers; or simply a second terminal). Each unit of work takes an exclusive ``fcntl`` lock on its own lock file, so
no two processes do the same work, and the lock vanishes with the process if it dies. A unit is finished when its
marker file exists; the marker is written atomically and last, so a half-written output never counts as done.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from monai_meep.utils import atomic_open

__all__ = ["RunLock", "atomic_write_json", "atomic_write_text", "environment_info", "git_info", "read_json", "utc_now"]


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader (another runner process, a resumed run) sees either the old file or the complete new one.
    """
    with atomic_open(path) as f:
        f.write(text)
    return str(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> str:
    """``atomic_write_text`` of ``obj`` as indented JSON (non-finite floats written as ``NaN`` / ``Infinity``)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON content of ``path``, or ``None`` when the file does not exist or is unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class RunLock:
    """Non-blocking exclusive lock on ``path`` (``fcntl.flock``), released on ``release()`` or process exit.

    Example::

        >>> lock = RunLock("/tmp/run/.lock_train")
        >>> if lock.acquire():  # False: another process is working on this unit
        ...     try: ...
        ...     finally: lock.release()
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Try to take the lock; ``True`` on success, ``False`` when another process holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock (the lock file stays: deleting it would race with a process opening it)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def git_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit of the checkout holding ``path`` (default: this package) and whether tracked files differ from it.

    Returns ``{"commit": None, ...}`` outside a git checkout (e.g. an installed wheel). Only read-only git commands.
    """
    where = str(Path(path) if path else Path(__file__).resolve().parent)
    info: dict[str, Any] = {"commit": None, "dirty": None}
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=20
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout
        info["dirty"] = bool(changed.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def environment_info() -> dict[str, Any]:
    """Package versions, interpreter, host and compute device of this process (for the run manifest)."""
    import importlib.metadata as md

    import torch

    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for pkg in ("monai-meep", "torch", "monai", "pytorch-ignite", "numpy", "nibabel", "scipy", "pandas"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    if torch.cuda.is_available():
        device = {"type": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
        versions["cuda"] = torch.version.cuda
    else:
        device = {"type": "cpu", "name": platform.processor() or platform.machine(), "count": os.cpu_count()}
    return {
        "versions": versions,
        "device": device,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "git": git_info(),
    }


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
