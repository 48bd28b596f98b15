# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Input checks of the bundle configs, and the project's own error message as the last line a failed run prints.

The configs import this module (``"$import monai_meep.apps.bundle.checks as checks"``) and call
:func:`check_settings` first thing in ``initialize`` and :func:`split_items` for ``eval_split``, so a typo in an
override (``--max_epochs two``, ``--eval_split testing``) stops the run with one line naming the key and the valid
values, before any data is read or a model is built.

Why an exception hook: MONAI's config parser wraps every error raised inside a config expression in
``RuntimeError("Failed to evaluate ...")``, which Python prints last, some 40 lines below the message that says
what is wrong. Importing this module installs a ``sys.excepthook`` that prints the normal traceback and then, as
the very last line, the innermost cause of the chain (``monai_meep: ValueError: ...``). It chains to the hook that
was there before and changes nothing else.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

__all__ = [
    "EVAL_SPLITS",
    "SETTING_KINDS",
    "check_cli_overrides",
    "check_settings",
    "install_error_hook",
    "metric_prefix",
    "root_cause",
    "split_items",
]

#: ``eval_split`` names and the datalist key each one reads.
EVAL_SPLITS = {"train": "training", "val": "validation", "validation": "validation", "test": "test"}

#: the prefix of the metric names an evaluation of each datalist split writes (``test_mean_dice``, ...); the
#: validation during training keeps ``val_``.
SPLIT_METRIC_PREFIXES = {"training": "train_", "validation": "val_", "test": "test_"}

#: the bundle conveniences :func:`check_settings` knows: ``(kind, minimum)``; ``None`` allowed where marked ``?``;
#: a ``rate`` lies in ``[minimum, 1)``.
SETTING_KINDS: dict[str, tuple[str, float | None]] = {
    "max_epochs": ("int", 1),
    "batch_size": ("int", 1),
    "num_subjects": ("int", 1),
    "val_interval": ("int", 1),
    "samples_per_volume": ("int", 1),
    "num_workers": ("int", 0),
    "seed": ("int", 0),
    "data_seed": ("int", 0),
    "sw_batch_size": ("int", 1),
    "lr_step_epochs": ("int", 1),
    "learning_rate": ("float", None),
    "lr_gamma": ("float", None),
    "scale": ("float", None),
    "sw_overlap": ("float", 0),
    "meep_lambda": ("float?", 0),
    "dropout": ("rate", 0),
}


def _fail(name: str, value: Any, expected: str, type_error: bool) -> None:
    cls = TypeError if type_error else ValueError
    raise cls(f"bundle setting {name!r} must be {expected}, got {value!r} ({type(value).__name__}); "
              f"set it with e.g. --{name} <value>.")  # fmt: skip


def check_settings(**settings: Any) -> bool:
    """Check the type and range of the bundle conveniences given (see :data:`SETTING_KINDS`).

    Integers must be ``int`` (not ``bool``, not a string such as ``"two"``) and at least their minimum; floats a
    finite real number (``learning_rate``, ``scale`` and ``lr_gamma`` > 0, others at least their minimum);
    ``meep_lambda`` may also be ``None`` (the paper's value); ``dropout`` (the network's dropout rate) lies in
    ``[0, 1)``.

    Returns:
        True (so the config's ``initialize`` list can hold the call).

    Raises:
        TypeError: a value of the wrong type, naming the key.
        ValueError: a value out of range, or a key this function does not know.

    Example:
        >>> check_settings(max_epochs=3, learning_rate=1e-3)
        True
    """
    for name, value in settings.items():
        if name not in SETTING_KINDS:
            raise ValueError(f"check_settings does not know {name!r}; known: {', '.join(SETTING_KINDS)}.")
        kind, minimum = SETTING_KINDS[name]
        if kind.endswith("?") and value is None:
            continue
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                _fail(name, value, "an integer", type_error=True)
            if value < minimum:
                _fail(name, value, f"an integer >= {minimum:g}", type_error=False)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(name, value, "a number" + (" or null" if kind.endswith("?") else ""), type_error=True)
        bad = value != value or value in (float("inf"), float("-inf"))
        bad = bad or (value < minimum if minimum is not None else value <= 0) or (kind == "rate" and value >= 1)
        if bad:
            bound = f">= {minimum:g}" if minimum is not None else "> 0"
            bound += " and < 1" if kind == "rate" else ""
            _fail(name, value, f"a finite number {bound}", type_error=False)
    return True


#: arguments of ``python -m monai.bundle run`` itself (not config overrides)
RUN_ARGUMENTS = ("run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file")


def _cli_options(argv: Sequence[str]) -> dict[str, str]:
    """``{name: value}`` of the ``--name value`` / ``--name=value`` options of a command line."""
    out: dict[str, str] = {}
    items = list(argv)
    for i, tok in enumerate(items):
        if not tok.startswith("--") or len(tok) < 3:
            continue
        name, eq, value = tok[2:].partition("=")
        if not eq:
            value = items[i + 1] if i + 1 < len(items) and not items[i + 1].startswith("--") else ""
        key = name.replace("-", "_")  # MONAI's own arguments may be spelled with dashes; config keys may not
        out[key if key in RUN_ARGUMENTS else name] = value
    return out


def _config_keys(files: Sequence[str]) -> set[str]:
    """Every key path (``a``, ``a#b``, ...) of the merged configs, as MONAI's ``#`` overrides address them."""
    from monai.bundle import ConfigParser

    keys: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            path = f"{prefix}#{k}" if prefix else str(k)
            keys.add(path)
            walk(v, path)

    walk(ConfigParser.load_config_files(list(files)), "")
    return keys


def check_cli_overrides(argv: Sequence[str] | None = None) -> bool:
    """Refuse a ``python -m monai.bundle run`` override that names no key of the configs (a typo such as
    ``--max_epoch 5`` would otherwise add a new, unused key and train with the default).

    Only looks at a command line whose program is MONAI's bundle CLI (``sys.argv`` by default); a bundle run from
    Python (``ConfigWorkflow(**overrides)``, the experiment runner) is left alone, its callers pass known keys.

    Returns:
        True (so the config can chain it before other checks).

    Raises:
        ValueError: an unknown key, with the closest known ones.
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0].endswith(os.path.join("monai", "bundle", "__main__.py")) or "run" not in argv[1:2]:
        return True
    options = _cli_options(argv[2:])
    files = options.get("config_file")
    if not files:
        return True
    try:
        parsed = ast.literal_eval(files)
    except (ValueError, SyntaxError):
        parsed = files
    names = [parsed] if isinstance(parsed, str) else list(parsed)
    if any(not os.path.isfile(f) for f in names):
        return True  # MONAI reports missing config files itself
    keys = _config_keys(names)
    for name in options:
        if name in RUN_ARGUMENTS or name in keys:
            continue
        close = difflib.get_close_matches(name, sorted(keys), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."
        raise ValueError(f"unknown bundle setting {name!r}: no config file defines it{hint}")
    return True


def split_items(datalist: Mapping[str, Sequence[dict]], eval_split: Any) -> Sequence[dict]:
    """The datalist items of ``eval_split`` (``train`` / ``val`` / ``validation`` / ``test``).

    Raises:
        ValueError: another split name, naming the valid ones.
    """
    if not isinstance(eval_split, str) or eval_split.lower() not in EVAL_SPLITS:
        raise ValueError(f"unknown eval_split {eval_split!r}; valid values are {', '.join(EVAL_SPLITS)}.")
    return datalist[EVAL_SPLITS[eval_split.lower()]]


def metric_prefix(eval_split: Any) -> str:
    """The prefix of the metric names (and their CSV files) of an evaluation of ``eval_split``: ``test_`` for the
    test split, ``val_`` for the validation split, ``train_`` for the training split.

    Raises:
        ValueError: an unknown split name, naming the valid ones.
    """
    if not isinstance(eval_split, str) or eval_split.lower() not in EVAL_SPLITS:
        raise ValueError(f"unknown eval_split {eval_split!r}; valid values are {', '.join(EVAL_SPLITS)}.")
    return SPLIT_METRIC_PREFIXES[EVAL_SPLITS[eval_split.lower()]]


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``'s ``__cause__`` / ``__context__`` chain (``exc`` itself if none)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


_PREVIOUS_HOOK = None


def _hook(etype: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    (_PREVIOUS_HOOK or sys.__excepthook__)(etype, exc, tb)
    cause = root_cause(exc)
    if cause is not exc and not isinstance(cause, KeyboardInterrupt):
        print(f"monai_meep: {type(cause).__name__}: {cause}", file=sys.stderr)


def install_error_hook() -> None:
    """Install the hook described in the module docstring (once; idempotent)."""
    global _PREVIOUS_HOOK
    if sys.excepthook is not _hook:
        _PREVIOUS_HOOK = sys.excepthook
        sys.excepthook = _hook


install_error_hook()
