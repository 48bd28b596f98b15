# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""How the package's CPU kernels run in parallel: an input split into parts, the parts run on plain threads.

One place for the MEEP regulariser kernel and the calibration histogram kernel. The number of parts depends only on
the input size (never on the thread count) and each part writes its own slot of the result, summed afterwards in
part order, so a result is the same bytes whatever the number of threads. Why plain threads and not OpenMP or
Numba's ``parallel=True``: the kernels are ``nogil``, a descheduled thread on a shared machine then delays only the
parts it holds (the others take the remaining parts; an OpenMP barrier would stall every thread), and no second
OpenMP runtime spins beside PyTorch's.

At most ``cpu_threads()`` threads run at once, the calling thread included (it takes parts too instead of waiting
idle): on 2 cores one helper thread, not a thread per part.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from monai_meep.utils import cpu_threads

__all__ = ["part_edges", "run_parts"]

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def part_edges(total: int, parts: int) -> list[int]:
    """``parts + 1`` edges splitting ``range(total)`` into ``parts`` contiguous ranges of sizes differing by <= 1."""
    parts = max(1, int(parts))
    return [total * k // parts for k in range(parts + 1)]


def _pool() -> ThreadPoolExecutor:
    # one pool for the process: kernels run every training step, and starting a thread costs ~0.1 ms
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="monai_meep_parts")
        return _POOL


def run_parts(fn: Callable[[int], None], n_parts: int, workers: int | None = None) -> None:
    """Call ``fn(k)`` once for every part ``k`` in ``range(n_parts)``, on at most ``workers`` threads.

    The threads (the calling one and ``workers - 1`` of a shared pool) take the next part as they become free, so a
    thread that the OS deschedules holds up one part only. ``fn`` must write only part ``k``'s own output.

    Args:
        fn: the work of one part.
        n_parts: number of parts.
        workers: threads at most (default :func:`monai_meep.utils.cpu_threads`, PyTorch's setting).

    Raises:
        Exception: the first exception raised by ``fn``, once the parts already started have finished (no new
            part starts after it).

    Example:
        >>> out = [0] * 5
        >>> run_parts(lambda k: out.__setitem__(k, k * k), 5)
        >>> out
        [0, 1, 4, 9, 16]
    """
    workers = max(1, min(cpu_threads() if workers is None else int(workers), n_parts))
    if workers == 1:
        for k in range(n_parts):
            fn(k)
        return
    counter = itertools.count()  # next() on a count is atomic under the GIL: each part is taken once
    failed = threading.Event()  # after an error no thread starts another part

    def take() -> None:
        for k in iter(counter.__next__, None):
            if k >= n_parts or failed.is_set():
                return
            try:
                fn(k)
            except BaseException:
                failed.set()
                raise

    futures = [_pool().submit(take) for _ in range(workers - 1)]
    try:
        take()
    finally:
        errors = [f.exception() for f in futures]  # waits for every helper, also when this thread raised
    for e in errors:
        if e is not None:
            raise e
