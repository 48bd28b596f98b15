# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""How the package compiles its Numba kernels (one place for the histogram and the MEEP regulariser kernels).

Imported only by kernel modules, which are themselves imported on first use: importing Numba costs about 0.4 s,
which ``import monai_meep`` should not pay.
"""

from __future__ import annotations

from collections.abc import Callable

import numba

__all__ = ["inline", "jit"]

# error_model="numpy": no ZeroDivisionError checks inside the loops (they would also block vectorisation)
inline = numba.njit(inline="always", error_model="numpy")


def jit(func: Callable | None = None, **options) -> Callable:
    """Compile ``func`` with Numba: ``nogil`` (parts run on plain threads), ``error_model="numpy"`` and ``cache``
    (each specialisation compiles once per installation, not once per process) where Numba finds a writable cache
    folder; on a read-only install without one, once per process. ``options`` (e.g. ``fastmath``) go to ``njit``.

    Usable as ``@jit`` or ``@jit(fastmath=...)``.
    """
    if func is None:
        return lambda f: jit(f, **options)
    options = {"nogil": True, "error_model": "numpy", **options}
    try:
        return numba.njit(cache=True, **options)(func)
    except RuntimeError:  # "cannot cache function ...: no locator available": nowhere to write the cache
        return numba.njit(**options)(func)
