# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Small helpers shared across the package: atomic file writes.

Every file the package writes for others to read (calibrators, figures, CSV tables, manifests, dataset records) goes
through :func:`atomic_open`, so a reader -- another process, a resumed run, TensorBoard -- sees either the old file or
the complete new one, never half of it, and an interrupted write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open"]


def _default_mode() -> int:
    """The permissions a plain ``open`` gives a new file: 0666 minus the umask (``mkstemp`` makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it is synced and renamed onto ``path``.

    Args:
        path: destination; its folder is created when missing.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        kwargs: passed to :func:`os.fdopen` (e.g. ``newline=""`` for CSV).

    Yields:
        The open temporary file.

    Raises:
        ValueError: ``mode`` is not a write mode. Whatever the ``with`` body raises propagates after the temporary
            file is removed; ``path`` is then untouched.

    Example:
        >>> with atomic_open("/tmp/monai_meep_example.txt") as f:
        ...     _ = f.write("complete or absent")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
