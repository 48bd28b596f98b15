# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
from __future__ import annotations

import os
import stat

import pytest

from monai_meep.utils import atomic_open


def test_atomic_open_replaces_whole_files_or_nothing(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    with atomic_open(path, newline="") as f:
        f.write("a,b\n")
    assert path.read_text() == "a,b\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as a plain open, not mkstemp's 0600
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_open(path) as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "a,b\n"  # the old file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv"]  # no temporary file left
    with atomic_open(path, "wb") as f:
        f.write(b"\x89PNG")
    assert path.read_bytes() == b"\x89PNG"
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(path, "a"):
            pass


def test_atomic_open_removes_a_killed_writers_temporary_only(tmp_path):
    import fcntl
    import time

    path = tmp_path / "cal.json"
    old = time.time() - 60
    stale, live, young = (tmp_path / f".cal.json.{tag}.tmp" for tag in ("dead", "live", "young"))
    for p in (stale, live, young):
        p.write_text("{")
    for p in (stale, live):
        os.utime(p, (old, old))
    foreign = tmp_path / ".cal.json.bak"  # not a temporary of ours
    foreign.write_text("keep")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a concurrent writer still writing
        with atomic_open(path) as f:
            f.write("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name, young.name, foreign.name])
    assert path.read_text() == "{}"
