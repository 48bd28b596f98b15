# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""``prepare_dataset``: one call from a bundle config to a reproducible train / validation / test datalist.

Given a real data set it detects the layout; given none it generates the phantom once (atomically, so DDP ranks
can race safely). The split is deterministic per seed and recorded in a JSON datalist file; passing that file back
as ``datalist_file`` reproduces a run exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from filelock import FileLock

from monai_meep.utils import atomic_open

from .la import LA_EXPECTED, la_datalist, la_layout, la_split, read_uamt_lists
from .readers import resolve_inside
from .wmh import WMH_EXPECTED, is_wmh_layout, wmh_datalist, wmh_split

__all__ = ["prepare_dataset", "default_phantom_dir", "cache_root", "PHANTOM_VERSION", "load_datalist_file"]

#: bumped whenever the phantom generators change output, so caches of older versions are not reused.
PHANTOM_VERSION = 2
_DEFAULT_SUBJECTS = {"wmh": 60, "la": 100}
_KEYS = ("training", "validation", "test")


def cache_root() -> Path:
    """``$MONAI_MEEP_CACHE`` if set, else ``~/.cache/monai_meep``."""
    env = os.environ.get("MONAI_MEEP_CACHE", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "monai_meep"


def default_phantom_dir(task: str, num_subjects: int | None = None, scale: float = 1.0, seed: int = 0) -> Path:
    """``<cache_root>/phantoms/<task>-n<N>-s<scale>-seed<S>-v<PHANTOM_VERSION>``."""
    n = _DEFAULT_SUBJECTS[task] if num_subjects is None else int(num_subjects)
    return cache_root() / "phantoms" / f"{task}-n{n}-s{float(scale):g}-seed{int(seed)}-v{PHANTOM_VERSION}"


@contextlib.contextmanager
def _file_lock(path: Path):
    """An inter-process lock (``filelock``, POSIX ``flock`` underneath) so concurrent ranks generate a phantom once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def _ensure_phantom(
    task: str, target: Path, num_subjects: int, seed: int, scale: float, workers: int | None = None
) -> Path:
    """Generate the phantom into ``target`` unless a complete one is there: temp dir, then ``os.replace``."""
    marker = target / "phantom.json"
    params = {"task": task, "num_subjects": num_subjects, "seed": seed, "scale": scale, "version": PHANTOM_VERSION}
    if not marker.is_file():
        with _file_lock(target.parent / f".{target.name}.lock"):
            if not marker.is_file():
                if target.is_dir() and any(target.iterdir()):
                    raise ValueError(
                        f"{target} exists, is not empty and holds no phantom.json; expected an empty "
                        f"or missing folder to generate the {task} phantom into."
                    )
                from ..phantoms import generate_la_phantom, generate_wmh_phantom

                gen = generate_wmh_phantom if task == "wmh" else generate_la_phantom
                tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
                try:
                    gen(tmp, num_subjects=num_subjects, seed=seed, scale=scale, workers=workers)
                    (tmp / "phantom.json").write_text(json.dumps(params, indent=1))
                    os.replace(tmp, target)  # atomic; replaces a missing or empty folder
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)
                    if not marker.is_file():  # without flock, another process may have won the rename: fine
                        raise
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
    found = json.loads(marker.read_text())
    if {k: found.get(k) for k in params} != params:
        raise ValueError(f"{target} holds a phantom made with {found}, not the requested {params}.")
    return target


def _rel(item: dict, root: Path) -> dict:
    def conv(p):
        return [conv(q) for q in p] if isinstance(p, list) else Path(p).relative_to(root).as_posix()

    return {k: (conv(v) if k in ("image", "label") else v) for k, v in item.items()}


def load_datalist_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, list[dict]]:
    """Read a datalist JSON written by ``prepare_dataset``; paths resolve against ``root`` (default: its ``root``).

    Raises:
        ValueError: not a datalist file (keys missing), or an entry resolving outside the data root.
        FileNotFoundError: a file it names is missing.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        base = Path(root) if root else Path(data["root"])
        split = {k: data[k] for k in _KEYS}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a monai_meep datalist file (expected keys root, {', '.join(_KEYS)}).") from e

    def resolve(p):
        if isinstance(p, list):
            return [resolve(q) for q in p]
        full = resolve_inside(base, p, path)
        if not full.is_file():
            raise FileNotFoundError(f"Missing file {full}: named by the datalist file {path}.")
        return str(full)

    return {
        k: [{kk: (resolve(v) if kk in ("image", "label") else v) for kk, v in it.items()} for it in split[k]]
        for k in _KEYS
    }


def prepare_dataset(
    task: str,
    dataset_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    num_subjects: int | None = None,
    scale: float = 1.0,
    seed: int = 0,
    split: str = "paper",
    held_out_site: str | None = None,
    datalist_file: str | os.PathLike | None = None,
    workers: int | None = None,
) -> dict[str, list[dict]]:
    """Datalists ``{"training", "validation", "test"}`` for WMH or LA, from a real data set or the phantom.

    Args:
        task: ``"wmh"`` or ``"la"``.
        dataset_dir: a data set in a supported layout (WMH challenge; LA UA-MT or Decathlon Task02_Heart). None, ``""``,
            a missing or an empty folder means: use the phantom (generated once into ``cache_dir``).
        cache_dir: phantom folder (default ``default_phantom_dir(task, num_subjects, scale, seed)`` under
            ``$MONAI_MEEP_CACHE`` or ``~/.cache/monai_meep``).
        num_subjects: phantom subjects (default 60 for WMH, 100 for LA); ignored for real data.
        scale: phantom grid scale (see ``monai_meep.apps.data.roi_size_for_scale``); ignored for real data.
        seed: seed of the phantom and of the split.
        split: ``"paper"`` (WMH 42 / 3 / 15 stratified by site; LA test.list or 20 %, 5 % of training validates) or
            ``"loso"`` (WMH only: ``held_out_site`` is the test set).
        held_out_site: the test site of ``split="loso"``.
        datalist_file: if it exists, the split is read from it (reproducing a run) and nothing is regenerated;
            otherwise the split is written there. Default record: ``datalist_<split>[_<site>]_seed<S>.json`` in the
            phantom folder, or under ``<cache_root>/datalists/`` for a real data set.
        workers: processes generating the phantom in parallel (None = ``min(CPUs, num_subjects, 16)``, serial for a
            small phantom; 1 = serial);
            the files, hence the cache folder and its name, do not depend on it. Ignored for real data.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, items
        ``{"image": ..., "label": ..., "subject": str, "site": str}`` with absolute paths.

    Raises:
        ValueError: unknown task / split, a layout matching neither format, an empty data set, a mismatch.
        FileNotFoundError: a file the layout or datalist names is missing.

    Example:
        >>> dl = prepare_dataset("la", num_subjects=12, scale=0.3)  # doctest: +SKIP
        >>> sorted(dl)  # doctest: +SKIP
        ['test', 'training', 'validation']
    """
    if task not in _DEFAULT_SUBJECTS:
        raise ValueError(f"Unknown task {task!r}; expected 'wmh' or 'la'.")
    if split not in ("paper", "loso"):
        raise ValueError(f"Unknown split {split!r}; expected 'paper' or 'loso'.")
    if split == "loso" and task != "wmh":
        raise ValueError("split='loso' (leave one site out) needs several sites: WMH only.")
    phantom = (
        dataset_dir in (None, "")
        or not Path(dataset_dir).exists()
        or (Path(dataset_dir).is_dir() and not any(Path(dataset_dir).iterdir()))
    )
    if phantom:
        if dataset_dir not in (None, ""):
            warnings.warn(f"dataset_dir {dataset_dir} is missing or empty: using the {task} phantom instead.")
        n = _DEFAULT_SUBJECTS[task] if num_subjects is None else int(num_subjects)
        root = Path(cache_dir) if cache_dir not in (None, "") else default_phantom_dir(task, n, scale, seed)
        root = _ensure_phantom(task, root.expanduser().absolute(), n, int(seed), float(scale), workers)
    else:
        root = Path(dataset_dir).expanduser().absolute()
        if not root.is_dir():
            raise ValueError(f"dataset_dir {root} is not a folder.")
    if datalist_file not in (None, "") and Path(datalist_file).is_file():
        return load_datalist_file(datalist_file, root)

    if task == "wmh":
        if not is_wmh_layout(root):
            raise ValueError(f"{root} matches no WMH layout; expected {WMH_EXPECTED}.")
        parts = wmh_split(wmh_datalist(root), seed=seed, split=split, held_out_site=held_out_site)
        layout = "wmh-challenge"
    else:
        layout = la_layout(root)
        if layout is None:
            raise ValueError(f"{root} matches no LA layout; expected {LA_EXPECTED}.")
        items = la_datalist(root)
        test_ids = None
        if layout == "uamt":
            test_ids = read_uamt_lists(root)[1]
        parts = la_split(items, seed=seed, test_subjects=test_ids)

    site_tag = f"_{str(held_out_site).replace('/', '-')}" if split == "loso" else ""
    name = f"datalist_{task}_{split}{site_tag}_seed{int(seed)}.json"
    if datalist_file not in (None, ""):
        record = Path(datalist_file)
    elif phantom:
        record = root / name
    else:
        digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
        record = cache_root() / "datalists" / f"{root.name}-{digest}-{name}"
    doc = {
        "format": "monai_meep-datalist-1",
        "task": task,
        "layout": layout,
        "split": split,
        "seed": int(seed),
        "held_out_site": held_out_site,
        "root": str(root),
        "phantom": phantom,
    }
    doc.update({k: [_rel(it, root) for it in parts[k]] for k in _KEYS})
    try:
        with atomic_open(record) as fh:
            json.dump(doc, fh, indent=1)
    except OSError as e:  # a read-only location must not stop training; the split is deterministic anyway
        warnings.warn(f"Could not write the datalist record {record} ({e}).")
    return parts
