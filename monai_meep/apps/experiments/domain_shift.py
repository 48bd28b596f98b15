# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Calibration under domain shift (the paper's stated open question).

``python -m monai_meep.apps.experiments domain-shift``.

WMH only (three sites). The same rows as Table 1 are trained on two sites and scored on the held-out one
(``split="loso"`` of ``monai_meep.apps.data.prepare_dataset``; on the phantom the sites differ in contrast, noise, bias
field and blur), and the in-domain reference is Table 1 on the usual split of the same data (models trained on all
three sites, scored on the test subjects of all three). Outputs under ``--out``: ``in_domain/`` and
``loso_<site>/`` (each a complete Table 1 folder, resumable as such) and ``domain_shift.md`` / ``domain_shift.csv``:
the held-out-site table and the change from in-domain per row and column (shifted minus in-domain, means over
seeds). The two settings differ in both the test subjects and the training sites, so the change measures "an
unseen site" together with "one site fewer in training".
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai_meep.apps.bundle.runner import parse_set
from monai_meep.apps.experiments.table1 import EXIT_STOPPED, add_common_arguments, export_results, run_table1
from monai_meep.apps.experiments.table_format import COLUMNS, EXTRA_COLUMNS, format_markdown, write_text

__all__ = ["DEFAULT_SITE", "SITES", "add_parser", "delta_table", "run_domain_shift"]

SITES = ("Utrecht", "Singapore", "GE3T")  # the challenge's (and the phantom's) three sites
DEFAULT_SITE = "GE3T"  # the site of a one-site run; chosen before any result was seen


def delta_table(shifted: dict[str, Any], in_domain: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{row: {header: shifted mean - in-domain mean}}`` for the rows present in both (NaN where either is)."""
    out: dict[str, dict[str, float]] = {}
    for row in shifted:
        if row not in in_domain:
            continue
        out[row] = {h: shifted[row][h]["mean"] - in_domain[row][h]["mean"] for _, h, _, _ in COLUMNS + EXTRA_COLUMNS}
    return out


def _delta_markdown(delta: dict[str, dict[str, float]]) -> str:
    headers = ["Training loss"] + [c[1] for c in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + ["---:"] * len(COLUMNS)) + "|"]
    for row, cells in delta.items():
        vals = [f"{cells[h]:+.3f}" if math.isfinite(cells[h]) else "n/a" for _, h, _, _ in COLUMNS]
        lines.append("| " + " | ".join([row, *vals]) + " |")
    return "\n".join(lines) + "\n"


def _sites(held_out_site: str | Sequence[str]) -> list[str]:
    sites = [held_out_site] if isinstance(held_out_site, str) else list(held_out_site)
    sites = list(SITES) if sites in (["all"], []) else sites
    if len(set(sites)) != len(sites):
        raise ValueError(f"held-out sites repeat: {sites}.")
    return sites


def _pool_held_out(out: Path, sites: Sequence[str]) -> list[str]:
    """``loso_pooled/``: the per-subject values of every held-out site in one folder (each test subject belongs to
    one site) with its paired statistics, so "MEEP under shift" is judged on all held-out subjects at once."""
    import pandas as pd

    from monai_meep.apps.experiments.stats import write_paired

    frames = {}
    for site in sites:
        for f in sorted((out / f"loso_{site}" / "per_subject").glob("*.csv")):
            frames.setdefault(f.name, []).append(pd.read_csv(f))
    if not frames:
        return []
    pooled = out / "loso_pooled"
    for name, parts in frames.items():
        write_text(pooled / "per_subject" / name, pd.concat(parts, ignore_index=True).to_csv(index=False))
    return write_paired(pooled, title=f"WMH, held-out sites {', '.join(sites)} pooled", task="wmh")


def run_domain_shift(
    out: str | Path = "./runs/domain_shift",
    held_out_site: str | Sequence[str] = "all",
    time_limit: float | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run (or resume) the in-domain Table 1 and a leave-one-site-out Table 1 of WMH per held-out site, then write
    the comparison.

    Args:
        out: output folder.
        held_out_site: a test site (phantom / challenge: ``Utrecht``, ``Singapore``, ``GE3T``), a list of them, or
            ``"all"`` (each of the three held out in turn).
        time_limit: minutes for all parts together.
        kwargs: further :func:`run_table1` arguments (``rows``, ``seeds``, ``backbone``, ``budget``, ``dataset_dir``,
            ``extra``, ``progress``).

    Returns:
        ``{"in_domain": result, "shifted": {site: result}, "delta": {site: {...}}, "complete": bool,
        "stopped": bool}``.

    Raises:
        ValueError: a site listed twice, or any error of :func:`run_table1`.
    """
    out = Path(out).expanduser().absolute()
    sites = _sites(held_out_site)
    t0 = time.time()
    extra = dict(kwargs.pop("extra", None) or {})
    ind = run_table1(task="wmh", out=out / "in_domain", time_limit=time_limit, extra=extra, **kwargs)
    shifted, delta = {}, {}
    for site in sites:
        # with no time left a part starts nothing but still tabulates what is finished
        left = None if time_limit is None else max(0.0, time_limit - (time.time() - t0) / 60.0)
        shift_extra = {**extra, "split": "loso", "held_out_site": site}
        shifted[site] = run_table1(task="wmh", out=out / f"loso_{site}", time_limit=left, extra=shift_extra, **kwargs)
        delta[site] = delta_table(shifted[site]["table"], ind["table"])
    complete = ind["complete"] and all(r["complete"] for r in shifted.values())
    if len(sites) > 1:
        _pool_held_out(out, sites)
    status = "" if complete else "\n**Partial: rerun the same command to continue.**\n"
    md = [f"# Domain shift: WMH, held-out site{'s' if len(sites) > 1 else ''} {', '.join(sites)}\n"]
    for site in sites:
        md += [
            f"## Trained on the two other sites, tested on {site}\n",
            format_markdown(shifted[site]["table"]),
            f"\nChange from in-domain (held-out {site} minus in-domain; mean over seeds):\n",
            _delta_markdown(delta[site]),
        ]
    md += [
        "## In-domain (Table 1 split: trained and tested on all three sites)\n",
        format_markdown(ind["table"]),
        "\nUnits as in Table 1 (Brier x1e-4, ECE x1e-3, HD mm). For DSC higher is better; for the others a "
        "positive change is a degradation. The two settings differ in test subjects and in the number of training "
        "sites. Paired statistics (each row against its base row on the same test subjects): `paired.md` in each "
        "folder" + (", and `loso_pooled/` over all held-out subjects." if len(sites) > 1 else ".") + "\n" + status,
    ]
    write_text(out / "domain_shift.md", "\n".join(md))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["held_out_site", "row", "metric", "in_domain_mean", "in_domain_std", "shifted_mean", "shifted_std", "change"]
    )
    for site in sites:
        for row, cells in delta[site].items():
            for _, h, _, _ in COLUMNS + EXTRA_COLUMNS:
                i, s = ind["table"][row][h], shifted[site]["table"][row][h]
                w.writerow(
                    [site, row, h, repr(i["mean"]), repr(i["std"]), repr(s["mean"]), repr(s["std"]), repr(cells[h])]
                )
    write_text(out / "domain_shift.csv", buf.getvalue())
    return {
        "in_domain": ind,
        "shifted": shifted,
        "delta": delta,
        "complete": complete,
        "stopped": bool(ind["stopped"] or any(r["stopped"] for r in shifted.values())),
    }


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``domain-shift`` on the ``python -m monai_meep.apps.experiments`` parser."""
    p = subparsers.add_parser(
        "domain-shift",
        help="WMH Table 1 on a held-out site vs in-domain (beyond the paper)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--held-out-site",
        nargs="+",
        default=["all"],
        help=f"test site(s) among {', '.join(SITES)}, or all (default: each held out in turn)",
    )
    add_common_arguments(p, "./runs/domain_shift/<backbone>_<budget>")
    p.set_defaults(func=_main)
    return p


def _main(args: argparse.Namespace) -> int:
    out = args.out if "<backbone>" not in args.out else f"./runs/domain_shift/{args.backbone}_{args.budget}"
    res = run_domain_shift(
        out=out,
        held_out_site=args.held_out_site,
        time_limit=args.time_limit,
        rows=args.rows,
        seeds=args.seeds,
        backbone=args.backbone,
        budget=args.budget,
        dataset_dir=args.dataset_dir,
        extra=parse_set(args.set, args.allow_expressions),
        progress=not args.no_progress,
    )
    if args.export:
        export_results(out, args.export)
        for sub in ("in_domain", "loso_pooled", *(f"loso_{s}" for s in _sites(args.held_out_site))):
            if (Path(out) / sub).is_dir():
                export_results(Path(out) / sub, Path(args.export) / sub)
    if (Path(out) / "domain_shift.md").is_file():
        print((Path(out) / "domain_shift.md").read_text())
    return EXIT_STOPPED if res["stopped"] and not res["complete"] else 0
