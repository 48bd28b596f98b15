# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Find the probability maps and labels of a report and pair them by case ID.

A file's case ID (and, for one-file-per-class layouts, its class) comes from a regular expression matched against its
name without the extension: the named group ``case`` (required) and ``cls`` (optional, a class index). Defaults:
``(?P<case>.+)`` (the whole stem: ``case_001.nii.gz`` is case ``case_001``). One file per class, nnU-Net style
(``case_001_0000.nii.gz``, ``case_001_0001.nii.gz``): :data:`PER_CLASS_PATTERN`. MONAI ``SaveImaged`` outputs with a
postfix (``case_001_prob.nii.gz``): ``(?P<case>.+)_prob``. A pattern with a ``/`` is matched against the path
relative to the folder instead (with a recursive glob such as ``*/*/wmh.nii.gz``), and the case ID joins, in pattern
order with ``_``, every group whose name starts with ``case``: the WMH challenge layout ``<site>/<id>/wmh.nii.gz`` is
``(?P<case_site>[^/]+)/(?P<case>[^/]+)/wmh``, so ``Utrecht/12/wmh.nii.gz`` is case ``Utrecht_12``, the name the
bundles give their maps (``Utrecht_12_prob.nii.gz``). Everything that cannot be paired (a prediction without
label, two files for one case, per-class files with a class missing, a name the pattern does not match) is returned
as a :class:`Problem` naming the case and file, never dropped silently; labels without a prediction are listed in
``Pairing.unused_labels`` (a label folder often holds every subject, the predictions only the test split).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_PATTERN",
    "PER_CLASS_PATTERN",
    "SUFFIXES",
    "CaseFiles",
    "Pairing",
    "Problem",
    "find_files",
    "pair_cases",
    "split_suffix",
]

#: file types read, longest first so that ``.nii.gz`` wins over ``.gz``
SUFFIXES = (".nii.gz", ".nii", ".npz", ".npy")
DEFAULT_PATTERN = r"(?P<case>.+)"
#: one file per class with a 4-digit class suffix: ``case_001_0000.nii.gz`` is class 0 of case ``case_001``
PER_CLASS_PATTERN = r"(?P<case>.+)_(?P<cls>\d{4})"


@dataclass(frozen=True)
class Problem:
    """A case (or file) that cannot be scored, and why."""

    case: str
    path: str
    reason: str


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: its prediction (one file, or one per class in class order) and its label."""

    case: str
    pred: tuple[str, ...]
    label: str


@dataclass
class Pairing:
    """Matched cases (sorted by ID) and the problems found while pairing."""

    cases: list[CaseFiles] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: label files with no prediction: not a problem (a label folder often holds every subject and the predictions
    #: only the test split), reported by the caller, never scored
    unused_labels: list[str] = field(default_factory=list)


def split_suffix(path: str | Path) -> tuple[str, str]:
    """``(stem, suffix)`` of a supported file name (``("case_001", ".nii.gz")``); suffix ``""`` if unsupported."""
    name = Path(path).name
    for suf in SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)], suf
    return name, ""


def _compile(pattern: str, what: str) -> re.Pattern:
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{what} {pattern!r} is not a valid regular expression: {e}.") from e
    if not _case_groups(rx):
        raise ValueError(f"{what} {pattern!r} needs a named group (?P<case>...) for the case ID.")
    return rx


def _case_groups(rx: re.Pattern) -> list[str]:
    """The groups that make up the case ID, in the order they appear in the pattern."""
    return [name for name, _ in sorted(rx.groupindex.items(), key=lambda kv: kv[1]) if name.startswith("case")]


def find_files(
    folder: str | Path, glob: str = "*", pattern: str = DEFAULT_PATTERN, what: str = "prediction"
) -> tuple[dict[str, dict[int | None, list[str]]], list[Problem]]:
    """Files of ``folder`` matching ``glob`` with a supported suffix, grouped by case ID and class.

    Args:
        folder: the folder (searched below only as far as ``glob`` says, e.g. ``"*/*/wmh.nii.gz"``).
        glob: shell pattern selecting the files (e.g. ``"*.npz"`` for nnU-Net's probabilities beside its
            segmentations).
        pattern: regular expression with groups ``case`` (and more ``case...`` groups, joined with ``_``) and
            optionally ``cls``, matched against the whole stem, or the relative path when it holds a ``/``.
        what: ``"prediction"`` or ``"label"``, for the messages.

    Returns:
        ``({case: {class or None: [paths]}}, problems)``: names the pattern does not match are problems.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: a bad ``pattern``, or no supported file matches ``glob``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {str(folder)!r} does not exist or is not a folder.")
    rx = _compile(pattern, f"the {what} pattern")
    found: dict[str, dict[int | None, list[str]]] = defaultdict(lambda: defaultdict(list))
    problems: list[Problem] = []
    files = sorted(p for p in folder.glob(glob) if p.is_file() and split_suffix(p)[1])
    if not files:
        raise ValueError(
            f"no {what} file in {str(folder)!r} matches {glob!r} with a supported suffix ({', '.join(SUFFIXES)})."
        )
    case_groups = _case_groups(rx)
    by_path = "/" in pattern  # matched against the relative path (nested layouts), else the file name
    for p in files:
        stem, suffix = split_suffix(p)
        name = p.relative_to(folder).as_posix()[: -len(suffix)] if by_path else stem
        m = rx.fullmatch(name)
        if m is None:
            kind = "path" if by_path else "file name"
            problems.append(Problem(name, str(p), f"{what} {kind} does not match the pattern {pattern!r}"))
            continue
        cls = m.groupdict().get("cls")
        found["_".join(m[g] for g in case_groups)][None if cls is None else int(cls)].append(str(p))
    return {k: dict(v) for k, v in found.items()}, problems


def _prediction_files(case: str, by_class: dict[int | None, list[str]]) -> tuple[tuple[str, ...] | None, str]:
    """The case's prediction files in class order, or ``(None, reason)``."""
    dup = {k: v for k, v in by_class.items() if len(v) > 1}
    if dup:
        files = ", ".join(sorted(Path(f).name for v in dup.values() for f in v))
        return None, f"duplicated: several prediction files for one case ({files}); narrow them with --glob"
    if None in by_class:
        if len(by_class) > 1:
            return None, "both a single prediction file and per-class files; narrow them with --glob"
        return (by_class[None][0],), ""
    classes = sorted(by_class)
    if classes != list(range(len(classes))):
        return None, f"per-class prediction files for classes {classes}: expected 0..{len(classes) - 1}"
    if len(classes) < 2:
        return None, "a single per-class prediction file: one file per class needs at least 2 classes"
    return tuple(by_class[c][0] for c in classes), ""


def pair_cases(
    pred_dir: str | Path,
    label_dir: str | Path,
    pred_glob: str = "*",
    label_glob: str = "*",
    pred_pattern: str = DEFAULT_PATTERN,
    label_pattern: str = DEFAULT_PATTERN,
) -> Pairing:
    """Pair the prediction files of ``pred_dir`` with the labels of ``label_dir`` by case ID.

    Args:
        pred_dir, label_dir: the two folders.
        pred_glob, label_glob: shell patterns selecting their files.
        pred_pattern, label_pattern: regular expressions for the case ID (see the module docstring).

    Returns:
        A :class:`Pairing`: the matched cases, and a :class:`Problem` for every unmatched, duplicated or
        incomplete case and every name the patterns do not match.

    Raises:
        FileNotFoundError, ValueError: as :func:`find_files`.

    Example:
        >>> pairing = pair_cases("preds", "labels", pred_glob="*.npz")  # doctest: +SKIP
        >>> [c.case for c in pairing.cases], pairing.problems  # doctest: +SKIP
    """
    preds, problems = find_files(pred_dir, pred_glob, pred_pattern, "prediction")
    labels, label_problems = find_files(label_dir, label_glob, label_pattern, "label")
    problems += label_problems
    out = Pairing(problems=problems)
    for case in sorted(set(preds) | set(labels)):
        pred_files = preds.get(case)
        label_files = [f for v in labels.get(case, {}).values() for f in v]
        if pred_files is None:
            out.unused_labels.extend(label_files)
            continue
        first = next(iter(pred_files.values()))[0]
        if not label_files:
            out.problems.append(Problem(case, first, "unmatched: a prediction without a label"))
            continue
        if len(label_files) > 1:
            names = ", ".join(sorted(Path(f).name for f in label_files))
            out.problems.append(Problem(case, label_files[0], f"duplicated: several label files ({names})"))
            continue
        files, reason = _prediction_files(case, pred_files)
        if files is None:
            out.problems.append(Problem(case, first, reason))
            continue
        out.cases.append(CaseFiles(case, files, label_files[0]))
    return out
