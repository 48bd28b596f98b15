# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""WMH Segmentation Challenge 2017 layout: datalist and the paper / leave-one-site-out splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .readers import check_label_values, load_volume, parse_check, volume_header

__all__ = ["wmh_datalist", "wmh_split", "is_wmh_layout", "WMH_EXPECTED", "WMH_LABELS"]

#: label values of the WMH challenge: 0 background, 1 WMH, 2 other pathology (ignored).
WMH_LABELS = (0, 1, 2)

WMH_EXPECTED = "<root>/<site>/<id>/pre/FLAIR.nii.gz, <root>/<site>/<id>/pre/T1.nii.gz and <root>/<site>/<id>/wmh.nii.gz"


def is_wmh_layout(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds at least one ``<id>/pre/FLAIR.nii.gz`` (at any depth)."""
    return any(Path(root).rglob("pre/FLAIR.nii.gz"))


def _id_key(name: str):
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _check_same_grid(paths: list[Path], headers: list[tuple]) -> None:
    (shape0, aff0), p0 = headers[0], paths[0]
    for p, (shape, aff) in zip(paths[1:], headers[1:], strict=False):
        if tuple(shape) != tuple(shape0):
            raise ValueError(f"Shape mismatch: {p} has shape {shape} but {p0} has {shape0}; expected the same grid.")
        if not np.allclose(aff, aff0, rtol=1e-4, atol=1e-3):
            raise ValueError(
                f"Affine mismatch: {p} has affine {np.round(aff, 4).tolist()} but {p0} has "
                f"{np.round(aff0, 4).tolist()}; expected co-registered volumes on the same grid."
            )


def wmh_datalist(root: str | os.PathLike, check: bool | str = True) -> list[dict]:
    """All subjects of a WMH challenge tree as MONAI datalist items.

    Each ``<id>/pre`` folder found under ``root`` (``<root>/<site>/<id>``, or deeper such as
    ``<root>/Amsterdam/GE3T/<id>``) is a subject; its site is the path between ``root`` and ``<id>``.

    Args:
        root: dataset root.
        check: ``True`` / ``"header"``: read the headers and check that FLAIR, T1 and labels share shape and affine;
            ``"full"``: also read every voxel (finds truncated files) and check the label values against
            ``WMH_LABELS``; ``False``: no check.

    Returns:
        ``[{"image": [FLAIR, T1], "label": wmh, "subject": id, "site": site}, ...]`` sorted by site then id;
        ``image`` lists two paths so ``LoadImaged`` stacks them as channels ``[FLAIR, T1]``.

    Raises:
        FileNotFoundError: ``root``, a subject's ``pre/`` folder (a folder holding ``wmh.nii.gz``) or its
            FLAIR / T1 / wmh file is missing.
        ValueError: no subject found, an unreadable volume, a shape / affine mismatch, a bad ``check`` or (with
            ``check="full"``) a label value outside ``WMH_LABELS``.

    Example:
        >>> items = wmh_datalist("/data/wmh/training")  # doctest: +SKIP
    """
    root = Path(root)
    mode = parse_check(check)
    if not root.is_dir():
        raise FileNotFoundError(f"WMH dataset root {root} does not exist; expected {WMH_EXPECTED}.")
    # A subject is found through its pre/ folder; one whose pre/ is gone entirely would vanish from the data set
    # without a word (6 subjects become 5), so a label without its pre/ folder is an error naming the subject.
    for label in sorted(root.rglob("wmh.nii.gz")):
        if not (label.parent / "pre").is_dir():
            raise FileNotFoundError(
                f"WMH subject {label.parent.relative_to(root).as_posix()} under {root} has "
                f"{label.name} but no pre/ folder; each subject needs {WMH_EXPECTED}."
            )
    items = []
    for pre in sorted(p for p in root.rglob("pre") if p.is_dir()):
        subj = pre.parent
        paths = [pre / "FLAIR.nii.gz", pre / "T1.nii.gz", subj / "wmh.nii.gz"]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"Missing file {p}: each WMH subject needs {WMH_EXPECTED}.")
        if mode:
            _check_same_grid(paths, [volume_header(p) for p in paths])
        if mode == "full":
            volumes = [load_volume(p)[0] for p in paths]
            check_label_values(volumes[-1], WMH_LABELS, str(paths[-1]))
        site = subj.parent.relative_to(root).as_posix()
        items.append(
            {
                "image": [str(paths[0]), str(paths[1])],
                "label": str(paths[2]),
                "subject": subj.name,
                "site": site if site != "." else "unknown",
            }
        )
    if not items:
        raise ValueError(f"Empty WMH data set: no subject folder under {root}; expected {WMH_EXPECTED}.")
    return sorted(items, key=lambda it: (it["site"], _id_key(it["subject"])))


def _allocate(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` across groups proportionally to ``sizes`` (largest remainder, ties to the first group)."""
    n = sum(sizes)
    quota = [total * s / n for s in sizes]
    out = [min(int(np.floor(q)), s) for q, s in zip(quota, sizes, strict=False)]
    order = sorted(range(len(sizes)), key=lambda i: (-(quota[i] - np.floor(quota[i])), i))
    for i in order * 2:
        if sum(out) >= total:
            break
        if out[i] < sizes[i]:
            out[i] += 1
    return out


def wmh_split(
    items: list[dict],
    seed: int = 0,
    split: str = "paper",
    held_out_site: str | None = None,
    test_fraction: float = 0.25,
    val_fraction: float = 0.05,
) -> dict[str, list[dict]]:
    """Deterministic WMH split, stratified by site.

    ``"paper"``: 25 % test and 5 % validation of all subjects (42 / 3 / 15 for the 60 challenge subjects, 14 / 1 / 5
    per site), each drawn per site in proportion to its size. ``"loso"``: every subject of ``held_out_site`` is the
    test set; 5 % of the others (at least one) validate, stratified by site.

    Raises:
        ValueError: unknown ``split``, ``held_out_site`` missing or not a site of ``items``, or too few subjects.
    """
    sites = sorted({it["site"] for it in items})
    rng = np.random.default_rng(int(seed))
    # Sort first so the split depends on the seed and the subject set only, not on the listing order.
    by_site = {s: sorted((it for it in items if it["site"] == s), key=lambda it: _id_key(it["subject"])) for s in sites}
    by_site = {s: [v[i] for i in rng.permutation(len(v))] for s, v in by_site.items()}
    test: list[dict] = []
    if split == "paper":
        n = len(items)
        if n < 3:
            raise ValueError(f"The WMH paper split needs at least 3 subjects (train / validation / test), got {n}.")
        n_test = _allocate(max(1, int(round(test_fraction * n))), [len(by_site[s]) for s in sites])
        for s, k in zip(sites, n_test, strict=False):
            test += by_site[s][:k]
            by_site[s] = by_site[s][k:]
    elif split == "loso":
        if held_out_site not in sites:
            raise ValueError(f"split='loso' needs held_out_site, one of {sites}; got {held_out_site!r}.")
        test = by_site.pop(held_out_site)
        sites = [s for s in sites if s != held_out_site]
        if sum(len(v) for v in by_site.values()) < 2:
            raise ValueError(f"split='loso' needs at least 2 subjects outside {held_out_site!r} (train + validation).")
    else:
        raise ValueError(f"Unknown split {split!r}; expected 'paper' or 'loso'.")
    n_left = sum(len(by_site[s]) for s in sites)
    n_val = _allocate(
        max(1, int(round(val_fraction * (len(items)))))
        if split == "paper"
        else max(1, int(round(val_fraction * n_left))),
        [len(by_site[s]) for s in sites],
    )
    val, train = [], []
    for s, k in zip(sites, n_val, strict=False):
        val += by_site[s][:k]
        train += by_site[s][k:]
    key = lambda it: (it["site"], _id_key(it["subject"]))  # noqa: E731
    return {"training": sorted(train, key=key), "validation": sorted(val, key=key), "test": sorted(test, key=key)}
