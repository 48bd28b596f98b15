# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Left atrium layouts: UA-MT h5 + ``train.list`` / ``test.list``, and Decathlon Task02_Heart NIfTI; their split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .readers import check_label_values, load_volume, parse_check, resolve_inside, volume_header

__all__ = ["la_datalist", "la_split", "la_layout", "LA_EXPECTED", "LA_LABELS", "read_uamt_lists"]

#: label values of the LA tasks: 0 background, 1 left atrium cavity.
LA_LABELS = (0, 1)

LA_EXPECTED = (
    "either the UA-MT layout <root>/train.list, <root>/test.list and <root>/<ID>/mri_norm2.h5 (datasets 'image', "
    "'label'), or the Decathlon Task02_Heart layout <root>/dataset.json, <root>/imagesTr/la_*.nii.gz and "
    "<root>/labelsTr/la_*.nii.gz"
)


def la_layout(root: str | os.PathLike) -> str | None:
    """``"uamt"``, ``"decathlon"`` or None for a folder matching neither LA layout."""
    root = Path(root)
    if (root / "train.list").is_file() or (root / "test.list").is_file():
        return "uamt"
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        return "decathlon"
    return None


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"Missing file {path}: the UA-MT layout needs train.list and test.list.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _refuse_duplicates(ids: list[str], source: str) -> None:
    """An ID listed twice would be trained on (or scored) twice: refuse it, naming the ID and the list."""
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise ValueError(f"Subject {sid!r} is listed twice in {source}; expected each subject once.")
        seen.add(sid)


def read_uamt_lists(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The IDs of ``train.list`` and ``test.list``, each once, none in both.

    Raises:
        FileNotFoundError: a list is missing.
        ValueError: an ID listed twice, or in both lists (test subjects would leak into training).
    """
    root = Path(root)
    train, test = _read_list(root / "train.list"), _read_list(root / "test.list")
    _refuse_duplicates(train, f"{root / 'train.list'}")
    _refuse_duplicates(test, f"{root / 'test.list'}")
    both = sorted(set(train) & set(test))
    if both:
        raise ValueError(
            f"Subject(s) {', '.join(both)} listed in both train.list and test.list under {root}; a test "
            f"subject must not be trained on."
        )
    return train, test


def _check_pair(
    image: str, label: str, image_ds: str = "image", label_ds: str = "image", mode: str | None = "header"
) -> None:
    if mode is None:
        return
    (s1, a1), (s2, a2) = volume_header(image, image_ds), volume_header(label, label_ds)
    where = image if image == label else f"{image} / {label}"
    if tuple(s1) != tuple(s2):
        raise ValueError(f"Shape mismatch in {where}: image {s1} vs label {s2}; expected the same grid.")
    if not np.allclose(a1, a2, rtol=1e-4, atol=1e-3):
        raise ValueError(
            f"Affine mismatch in {where}: image {np.round(a1, 4).tolist()} vs label "
            f"{np.round(a2, 4).tolist()}; expected the same grid."
        )
    if mode == "full":
        load_volume(image, image_ds)
        check_label_values(load_volume(label, label_ds)[0], LA_LABELS, label if image != label else f"{label}:label")


def la_datalist(root: str | os.PathLike, check: bool | str = True) -> list[dict]:
    """All labelled subjects of an LA data set as MONAI datalist items.

    UA-MT: subjects of ``train.list`` then ``test.list``; ``image`` and ``label`` are the same h5 path (read the
    ``image`` / ``label`` datasets with ``LAH5Reader``). Decathlon: the ``training`` entries of ``dataset.json``.

    Args:
        root: dataset root.
        check: ``True`` / ``"header"``: read the headers and check image / label shapes (and affines for NIfTI);
            ``"full"``: also read every voxel (finds truncated files) and check the label values against
            ``LA_LABELS``; ``False``: no check.

    Returns:
        ``[{"image": path, "label": path, "subject": id, "site": "utah" | "decathlon"}, ...]``.

    Raises:
        FileNotFoundError: a listed file is missing.
        ValueError: a layout matching neither format, an empty data set, an unreadable volume, a mismatch, a subject
            listed twice or in both lists, a list entry outside ``root``, or (``check="full"``) a bad label value.

    Example:
        >>> items = la_datalist("/data/2018LA_Seg_Training Set")  # doctest: +SKIP
    """
    root = Path(root)
    mode = parse_check(check)
    layout = la_layout(root) if root.is_dir() else None
    if layout is None:
        raise ValueError(f"{root} matches no LA layout; expected {LA_EXPECTED}.")
    items = []
    if layout == "uamt":
        train, test = read_uamt_lists(root)
        for sid, source in [(s, root / "train.list") for s in train] + [(s, root / "test.list") for s in test]:
            path = resolve_inside(root, sid, source) / "mri_norm2.h5"
            if not path.is_file():
                raise FileNotFoundError(f"Missing file {path}: listed in {source}.")
            _check_pair(str(path), str(path), "image", "label", mode)
            items.append({"image": str(path), "label": str(path), "subject": sid, "site": "utah"})
    else:
        try:
            entries = json.loads((root / "dataset.json").read_text())["training"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"Cannot read the 'training' list of {root / 'dataset.json'} ({e}).") from e
        source = root / "dataset.json"
        bad = next((e for e in entries if not isinstance(e, dict) or not {"image", "label"} <= set(e)), None)
        if bad is not None:
            raise ValueError(
                f"Entry {bad!r} of the 'training' list of {source} is not an object with 'image' and 'label'."
            )
        _refuse_duplicates([Path(str(e.get("image", ""))).name.split(".")[0] for e in entries], str(source))
        for e in entries:
            image, label = (resolve_inside(root, str(e[k]), source) for k in ("image", "label"))
            for p in (image, label):
                if not p.is_file():
                    raise FileNotFoundError(f"Missing file {p}: listed in {source}.")
            _check_pair(str(image), str(label), mode=mode)
            items.append(
                {"image": str(image), "label": str(label), "subject": image.name.split(".")[0], "site": "decathlon"}
            )
    if not items:
        raise ValueError(f"Empty LA data set under {root}: the lists / dataset.json name no subject.")
    return items


def la_split(
    items: list[dict],
    seed: int = 0,
    test_subjects: list[str] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.05,
) -> dict[str, list[dict]]:
    """Deterministic LA split: the given test subjects (UA-MT ``test.list``) or a seeded 20 %; then 5 % of the
    training subjects (at least one) for validation.

    Raises:
        ValueError: fewer than 3 subjects, or an empty training set.
    """
    rng = np.random.default_rng(int(seed))
    items = sorted(items, key=lambda it: it["subject"])  # the split depends on the subject set, not its order
    if len(items) < 3:
        raise ValueError(f"The LA split needs at least 3 subjects (train / validation / test), got {len(items)}.")
    if test_subjects is None:
        perm = [items[i] for i in rng.permutation(len(items))]
        n_test = max(1, int(round(test_fraction * len(items))))
        test, rest = perm[:n_test], perm[n_test:]
    else:
        wanted = set(test_subjects)
        test = [it for it in items if it["subject"] in wanted]
        rest = [it for it in items if it["subject"] not in wanted]
    if len(rest) < 2:
        raise ValueError(f"The LA split leaves {len(rest)} training subject(s); expected at least 2.")
    rest = [rest[i] for i in rng.permutation(len(rest))]
    n_val = max(1, int(round(val_fraction * len(rest))))
    key = lambda it: it["subject"]  # noqa: E731
    return {
        "training": sorted(rest[n_val:], key=key),
        "validation": sorted(rest[:n_val], key=key),
        "test": sorted(test, key=key),
    }
