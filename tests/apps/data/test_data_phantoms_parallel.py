"""Parallel phantom generation: byte-identical to the serial run, errors name the subject, fixed list order."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest

from monai_meep.apps.data import prepare_dataset
from monai_meep.apps.phantoms import PhantomGenerationError, generate_la_phantom, generate_wmh_phantom
from monai_meep.apps.phantoms._parallel import resolve_workers, run_subjects
from monai_meep.apps.phantoms.la import _la_id, _la_rng, synthesize_la_subject

TINY = 0.1  # the smallest grids the generators allow; the pool start-up dominates the cost anyway


def _tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path (hashes, not ``filecmp``, so contents are compared)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# Each pool start costs seconds (every spawned worker imports torch / MONAI), so each test starts one pool only.


def test_la_parallel_is_byte_identical_to_serial_and_lists_keep_order(tmp_path):
    serial = _tree_hashes(generate_la_phantom(tmp_path / "serial", num_subjects=5, seed=7, scale=TINY, workers=1))
    out = generate_la_phantom(tmp_path / "parallel", num_subjects=5, seed=7, scale=TINY, workers=2)
    assert len(serial) == 5 + 2  # one file per subject, train.list, test.list
    assert _tree_hashes(out) == serial
    # independent reference for the order: subject i's id is the first draw of its own (seed, i) generator
    expected = [_la_id(_la_rng(i, 7)) for i in range(5)]
    assert (out / "train.list").read_text().split() == expected[:4]
    assert (out / "test.list").read_text().split() == expected[4:]


@pytest.mark.slow
def test_wmh_parallel_is_byte_identical_to_serial(tmp_path):
    # WMH warps with torch grid_sample: the workers run 1 thread, the parent several; the bytes must not care
    serial = _tree_hashes(generate_wmh_phantom(tmp_path / "serial", num_subjects=4, seed=7, scale=TINY, workers=1))
    parallel = _tree_hashes(generate_wmh_phantom(tmp_path / "parallel", num_subjects=4, seed=7, scale=TINY, workers=2))
    assert len(serial) == 3 * 4  # FLAIR, T1, wmh per subject
    assert parallel == serial


@pytest.mark.slow
def test_worker_error_names_the_subject(tmp_path):
    # Subject 2 cannot be written (a file sits where its folder must go): a real failure inside a worker process.
    bad_id = synthesize_la_subject(2, seed=7, scale=TINY)["id"]
    out = tmp_path / "la"
    out.mkdir()
    (out / bad_id).write_text("in the way")
    with pytest.raises(PhantomGenerationError, match=rf"la phantom: subject 2 \(id {bad_id}\) failed") as info:
        generate_la_phantom(out, num_subjects=3, seed=7, scale=TINY, workers=2)
    assert info.value.__cause__ is not None  # the worker's own error (and traceback) is kept as the cause
    assert not (out / "train.list").exists()


def _fail_on(index: int, bad: int) -> int:
    if index == bad:
        raise ValueError("boom")
    return index * 10


def test_serial_error_wrapping_and_order():
    assert run_subjects(functools.partial(_fail_on, bad=-1), 4, 1, "x", str) == [0, 10, 20, 30]
    with pytest.raises(PhantomGenerationError, match=r"x phantom: subject 3 \(S3\) failed: ValueError: boom"):
        run_subjects(functools.partial(_fail_on, bad=3), 4, 1, "x", lambda i: f"S{i}")


def test_prepare_dataset_failure_leaves_no_folder(tmp_path, monkeypatch):
    import monai_meep.apps.phantoms.la as la_mod

    def broken(index, seed=0, scale=1.0):
        raise RuntimeError("disk full")

    monkeypatch.setattr(la_mod, "synthesize_la_subject", broken)  # workers=1 runs in this process
    target = tmp_path / "cache" / "la"
    with pytest.raises(PhantomGenerationError, match="subject 0"):
        prepare_dataset("la", cache_dir=target, num_subjects=2, scale=TINY, workers=1)
    assert not target.exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".la.lock"]  # temp folder removed


def test_resolve_workers(monkeypatch):
    import monai_meep.apps.phantoms._parallel as par

    monkeypatch.setattr(par, "_available_cpus", lambda: 64)
    assert resolve_workers(None, 100) == par.MAX_DEFAULT_WORKERS
    assert resolve_workers(None, 3) == 3
    assert resolve_workers(None, 100, scale=0.3) == par.MAX_DEFAULT_WORKERS  # 2.7 full-size subjects of work
    assert resolve_workers(None, 16, scale=0.3) == 1  # 0.43: a pool would cost more than it saves
    assert resolve_workers(None, 1) == 1
    assert resolve_workers(2, 16, scale=0.1) == 2  # an explicit request is honoured
    monkeypatch.setattr(par, "_available_cpus", lambda: 2)
    assert resolve_workers(None, 100) == 2
    assert resolve_workers(8, 3) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            resolve_workers(bad, 4)
    with pytest.raises(ValueError, match="workers"):
        generate_la_phantom("/nonexistent/never-created", num_subjects=2, workers=0)


def test_progress_bar_counts_the_subjects(capsys):
    # the bar goes to stderr and counts finished subjects; progress=False prints nothing
    run_subjects(functools.partial(_fail_on, bad=-1), 3, 1, "la", str)
    err = capsys.readouterr().err
    assert "la phantom" in err and "3/3" in err
    run_subjects(functools.partial(_fail_on, bad=-1), 3, 1, "la", str, progress=False)
    assert capsys.readouterr().err == ""
