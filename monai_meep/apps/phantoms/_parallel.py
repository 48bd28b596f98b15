# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Run the per-subject jobs of a phantom generator serially or in a process pool, with errors naming the subject."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from monai_meep.utils import check_int

__all__ = ["PhantomGenerationError", "resolve_workers", "run_subjects", "MAX_DEFAULT_WORKERS", "MIN_PARALLEL_WORK"]

#: cap of the default worker count: a full-size subject needs a few hundred MB, and beyond ~16 processes the
#: one-off start-up (importing torch / MONAI in every worker) outweighs the gain for the default 60-100 subjects.
MAX_DEFAULT_WORKERS = 16
#: below this much work (in full-size subjects, ~5-13 s of CPU each) the default is serial: a pool would not pay off.
MIN_PARALLEL_WORK = 2.0


class PhantomGenerationError(RuntimeError):
    """A subject of a phantom could not be generated; the message names the subject (index and id)."""


def _available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one, e.g. under a batch scheduler)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None, num_subjects: int, scale: float = 1.0) -> int:
    """The number of processes to use.

    ``None`` means ``min(available CPUs, num_subjects, MAX_DEFAULT_WORKERS)``, except that a phantom with less work
    than ``MIN_PARALLEL_WORK`` full-size subjects (work ~ ``num_subjects * scale ** 3``) runs serially: starting a
    pool costs seconds, more than such a phantom takes (e.g. the tests' and bundles' small ``scale`` phantoms).
    An explicit ``workers`` is used as given (at most one per subject).

    Raises:
        ValueError: ``workers`` is not None and < 1 (or not an integer).
    """
    if workers is None:
        if int(num_subjects) * float(scale) ** 3 < MIN_PARALLEL_WORK:
            return 1
        return max(1, min(_available_cpus(), int(num_subjects), MAX_DEFAULT_WORKERS))
    if isinstance(workers, bool) or int(workers) != workers or int(workers) < 1:
        raise ValueError(f"workers must be None or an integer >= 1, got {workers!r}.")
    return max(1, min(int(workers), int(num_subjects)))


def check_generation_args(
    num_subjects: int, scale: float, workers: int | None, seed: int | None = None
) -> tuple[int, float]:
    """Validate the arguments every phantom generator shares, before anything is created on disk.

    Returns:
        ``(num_subjects, scale)`` as int and float.

    Raises:
        ValueError: ``num_subjects`` < 1, ``scale`` outside (0, 2], a negative ``seed`` (numpy's own message came
            after the output folder was made) or a bad ``workers`` (see :func:`resolve_workers`).
        TypeError: ``seed`` not an int.
    """
    if seed is not None:
        check_int(seed, "seed", minimum=0)
    n, s = int(num_subjects), float(scale)
    if n < 1:
        raise ValueError(f"num_subjects must be >= 1, got {num_subjects}.")
    if not 0.0 < s <= 2.0:
        raise ValueError(f"scale must be in (0, 2], got {scale}.")
    resolve_workers(workers, n, s)
    return n, s


def _init_worker() -> None:
    """One thread per worker: the pool is the parallelism, and nested thread pools would only oversubscribe."""
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn; without it BLAS keeps its threads
        pass


def _context() -> multiprocessing.context.BaseContext:
    """A "forkserver" context where the OS has one, else "spawn"; never plain "fork".

    A forked child would inherit the parent's torch / OpenMP thread pools mid-state and can deadlock. The fork
    server is a fresh single-threaded process started once per parent; preloading the generators there means each
    later pool forks workers that already imported torch / MONAI (a spawned worker pays that import, seconds, anew).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Sets the preload list of this process's fork server (ignored if it already runs, e.g. for a DataLoader);
    # extra preloaded modules only make later forkserver children start faster.
    ctx.set_forkserver_preload(["monai_meep.apps.phantoms.la", "monai_meep.apps.phantoms.wmh"])
    return ctx


def _wrap(task: str, index: int, describe: Callable[[int], str], err: BaseException) -> PhantomGenerationError:
    return PhantomGenerationError(
        f"{task} phantom: subject {index} ({describe(index)}) failed: {type(err).__name__}: {err}"
    )


def run_subjects(
    job: Callable[[int], Any],
    num_subjects: int,
    workers: int | None,
    task: str,
    describe: Callable[[int], str],
    scale: float = 1.0,
    progress: bool = True,
) -> list[Any]:
    """``[job(0), ..., job(n - 1)]``, computed in index order (``workers=1``) or by a process pool.

    ``job`` must be picklable (a module-level function or a ``functools.partial`` of one) and its result must
    depend only on its index (each subject seeds its own generator from ``(seed, index)``), so the outputs do not
    depend on which worker ran which subject. Workers come from a fork server (or are spawned), never forked from
    this process (see :func:`_context`).

    Args:
        job: ``job(index)`` synthesizes and writes one subject and returns what the parent needs (small).
        num_subjects: number of subjects.
        workers: processes (see :func:`resolve_workers`); 1 runs in this process.
        task: name used in error messages.
        describe: ``describe(index)`` -> a human-readable subject id for error messages (cheap, no synthesis).
        scale: the phantom's grid scale (only sizes the default ``workers``).
        progress: a tqdm bar of finished subjects (on stderr; generation at the default size takes minutes).

    Returns:
        The job results in index order, whatever order the workers finished in.

    Raises:
        PhantomGenerationError: a job raised; the message names the subject, the original error is its cause
            (for a worker, the cause carries the worker's traceback). Pending subjects are cancelled.
    """
    from tqdm.auto import tqdm

    n = int(num_subjects)
    nw = resolve_workers(workers, n, scale)
    bar = tqdm(total=n, desc=f"{task} phantom", unit="subject", disable=not progress)
    with bar:
        if nw == 1:
            results = []
            for i in range(n):
                try:
                    results.append(job(i))
                except Exception as e:
                    raise _wrap(task, i, describe, e) from e
                bar.update()
            return results
        results: list[Any] = [None] * n
        with ProcessPoolExecutor(max_workers=nw, mp_context=_context(), initializer=_init_worker) as pool:
            futures = {pool.submit(job, i): i for i in range(n)}
            for f in as_completed(futures):
                i = futures[f]
                if f.exception() is not None:
                    pool.shutdown(wait=True, cancel_futures=True)  # let running subjects finish, start no new ones
                    # the lowest failed index, so the error does not depend on which worker finished first
                    failed = min(j for g, j in futures.items() if g.done() and not g.cancelled() and g.exception())
                    err = next(g.exception() for g, j in futures.items() if j == failed)
                    raise _wrap(task, failed, describe, err) from err
                results[i] = f.result()
                bar.update()
    return results
