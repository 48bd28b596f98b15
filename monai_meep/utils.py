# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Small helpers shared across the package: atomic file writes, integer argument checks.

Every file the package writes for others to read (calibrators, figures, CSV tables, manifests, dataset records) goes
through :func:`atomic_open`, so a reader -- another process, a resumed run, TensorBoard -- sees either the old file or
the complete new one, never half of it, and an interrupted write leaves nothing behind (a killed process leaves its
temporary file, which the next write to the same path removes).
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Any

__all__ = ["NUMBA_LABEL_DTYPES", "atomic_open", "check_int", "cpu_threads", "import_numba_kernels", "numba_labels"]

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX: stale temporary files are then left alone
    fcntl = None  # type: ignore[assignment]

#: a temporary file younger than this is never removed as stale (covers the instant between mkstemp and flock).
_STALE_AFTER_S = 2.0


def _remove_stale_temporaries(path: Path) -> None:
    """Remove ``.<name>.*.tmp`` files beside ``path`` left by a killed writer.

    A live writer holds an ``flock`` on its temporary file (released by the kernel when the process dies), so a file
    whose lock can be taken, and that is older than ``_STALE_AFTER_S``, belongs to no one. Without ``fcntl`` nothing
    is removed: a concurrent writer's file cannot be told from a dead one's.
    """
    if fcntl is None:
        return
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime < _STALE_AFTER_S:
                continue
            with open(tmp, "rb") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live writer holds it
                tmp.unlink(missing_ok=True)
        except OSError:  # gone meanwhile, or not ours to remove: cleaning is best effort
            continue


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
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # marks the file as live for _remove_stale_temporaries; freed on close
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an ``int``, refusing non-integers (``"2"``, ``2.5``, ``True``) and values below ``minimum``.

    Python and NumPy integers pass (anything with ``__index__`` but a bool).

    Raises:
        TypeError: not an integer, naming ``name``.
        ValueError: below ``minimum``, naming ``name``.

    Example:
        >>> check_int(15, "num_bins", minimum=1)
        15
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    out = int(value.__index__())
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}.")
    return out


def cpu_threads() -> int:
    """Threads for the package's own CPU kernels: torch's setting (users already tune it), at most the CPUs this
    process may use (the affinity mask, e.g. under a batch scheduler)."""
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cpus))


def import_numba_kernels(module: str, fallback: str) -> ModuleType | None:
    """Import the Numba kernel module ``module`` on first use; ``None``, with one warning naming ``fallback``, when
    Numba (or the module) fails to import, e.g. a Numba release that does not support the installed NumPy.

    Importing Numba costs about 0.4 s, which ``import monai_meep`` should not pay: callers cache this function's
    result (``functools.cache``) and call it on their first CPU computation.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        warnings.warn(f"Numba could not be imported ({e}); {fallback}.", stacklevel=3)
        return None


#: label dtypes the package's Numba kernels read as they are
NUMBA_LABEL_DTYPES = ("int64", "int32", "uint8", "float32", "float64")


def numba_labels(labels: Any) -> Any:
    """A label tensor in a dtype the Numba kernels read, converted exactly: ``bool`` viewed as ``uint8``, other
    integers as ``int64``, ``float16`` / ``bfloat16`` as ``float64``; the native dtypes unchanged (no copy)."""
    import torch

    if labels.dtype == torch.bool:
        return labels.view(torch.uint8)
    if str(labels.dtype).removeprefix("torch.") in NUMBA_LABEL_DTYPES:
        return labels
    return labels.double() if labels.is_floating_point() else labels.long()
