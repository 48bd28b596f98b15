"""The part runner of the CPU kernels: every part once, at most ``workers`` threads at a time (the caller's
included), the first error re-raised after all parts stopped, and results independent of the thread count."""

from __future__ import annotations

import threading
import time

import pytest

from monai_meep.kernels.parts import part_edges, run_parts


def test_part_edges_cover_the_range_evenly():
    for total, parts in [(0, 1), (10, 3), (7, 7), (1000, 16), (5, 1)]:
        e = part_edges(total, parts)
        assert e[0] == 0 and e[-1] == total and len(e) == parts + 1
        sizes = [b - a for a, b in zip(e, e[1:], strict=False)]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_every_part_once_and_at_most_workers_threads(workers):
    seen, lock, active, peak = [], threading.Lock(), [0], [0]

    def fn(k):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            seen.append((k, threading.get_ident()))
        time.sleep(0.002)
        with lock:
            active[0] -= 1

    run_parts(fn, 16, workers=workers)
    assert sorted(k for k, _ in seen) == list(range(16))
    assert 1 <= peak[0] <= workers
    assert threading.get_ident() in {t for _, t in seen}  # the caller takes parts too


def test_first_error_is_raised_after_every_part_stopped():
    done = []

    def fn(k):
        if k == 3:
            raise RuntimeError("part 3 failed")
        time.sleep(0.001)
        done.append(k)

    with pytest.raises(RuntimeError, match="part 3"):
        run_parts(fn, 12, workers=2)
    # no part is left running behind the caller's back
    n = len(done)
    time.sleep(0.05)
    assert len(done) == n
