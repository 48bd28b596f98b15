# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Calibration under domain shift (the paper's stated open question): ``python -m monai_meep.experiments domain-shift``.

WMH only (three sites). The same rows as Table 1 are trained on two sites and scored on the held-out one
(``split="loso"`` of ``monai_meep.data.prepare_dataset``; on the phantom the sites differ in contrast, noise, bias
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
from pathlib import Path
from typing import Any

from monai_meep.experiments.bundle_runner import parse_set
from monai_meep.experiments.table1 import EXIT_STOPPED, add_common_arguments, export_results, run_table1
from monai_meep.experiments.table_format import COLUMNS, EXTRA_COLUMNS, format_markdown, write_text

__all__ = ["add_parser", "delta_table", "run_domain_shift"]

DEFAULT_SITE = "GE3T"  # the challenge's third site; chosen before any result was seen


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


def run_domain_shift(
    out: str | Path = "./runs/domain_shift",
    held_out_site: str = DEFAULT_SITE,
    time_limit: float | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run (or resume) the in-domain Table 1 and the leave-one-site-out Table 1 of WMH, then write the comparison.

    Args:
        out: output folder.
        held_out_site: the test site (phantom / challenge: ``Utrecht``, ``Singapore``, ``GE3T``).
        time_limit: minutes for both parts together.
        kwargs: further :func:`run_table1` arguments (``rows``, ``seeds``, ``backbone``, ``budget``, ``dataset_dir``,
            ``extra``, ``progress``).

    Returns:
        ``{"in_domain": result, "shifted": result, "delta": {...}, "complete": bool, "stopped": bool}``.
    """
    out = Path(out).expanduser().absolute()
    t0 = time.time()
    extra = dict(kwargs.pop("extra", None) or {})
    ind = run_table1(task="wmh", out=out / "in_domain", time_limit=time_limit, extra=extra, **kwargs)
    # with no time left the second part starts nothing but still tabulates what is finished
    left = None if time_limit is None else max(0.0, time_limit - (time.time() - t0) / 60.0)
    shift_extra = {**extra, "split": "loso", "held_out_site": held_out_site}
    sh = run_table1(task="wmh", out=out / f"loso_{held_out_site}", time_limit=left, extra=shift_extra, **kwargs)
    delta = delta_table(sh["table"], ind["table"])
    complete = ind["complete"] and sh["complete"]
    status = "" if complete else "\n**Partial: rerun the same command to continue.**\n"
    md = (
        f"# Domain shift: WMH, held-out site {held_out_site}\n\n"
        f"## Trained on the two other sites, tested on {held_out_site}\n\n" + format_markdown(sh["table"]) +
        "\n## In-domain (Table 1 split: trained and tested on all three sites)\n\n" + format_markdown(ind["table"]) +
        "\n## Change from in-domain (held-out minus in-domain; mean over seeds)\n\n" + _delta_markdown(delta) +
        "\nUnits as in Table 1 (Brier x1e-4, ECE x1e-3, HD mm). For DSC higher is better; for the others a positive "
        "change is a degradation. The two settings differ in test subjects and in the number of training sites.\n"
        + status
    )
    write_text(out / "domain_shift.md", md)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["held_out_site", "row", "metric", "in_domain_mean", "in_domain_std", "shifted_mean", "shifted_std",
                "change"])
    for row, cells in delta.items():
        for _, h, _, _ in COLUMNS + EXTRA_COLUMNS:
            i, s = ind["table"][row][h], sh["table"][row][h]
            w.writerow([held_out_site, row, h, repr(i["mean"]), repr(i["std"]), repr(s["mean"]), repr(s["std"]),
                        repr(cells[h])])
    write_text(out / "domain_shift.csv", buf.getvalue())
    return {"in_domain": ind, "shifted": sh, "delta": delta, "complete": complete,
            "stopped": bool(ind["stopped"] or sh["stopped"])}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``domain-shift`` on the ``python -m monai_meep.experiments`` parser."""
    p = subparsers.add_parser("domain-shift", help="WMH Table 1 on a held-out site vs in-domain (beyond the paper)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--held-out-site", default=DEFAULT_SITE, help=f"test site (default {DEFAULT_SITE})")
    add_common_arguments(p, "./runs/domain_shift/<backbone>_<budget>")
    p.set_defaults(func=_main)
    return p


def _main(args: argparse.Namespace) -> int:
    out = args.out if "<backbone>" not in args.out else f"./runs/domain_shift/{args.backbone}_{args.budget}"
    res = run_domain_shift(out=out, held_out_site=args.held_out_site, time_limit=args.time_limit, rows=args.rows,
                           seeds=args.seeds, backbone=args.backbone, budget=args.budget, dataset_dir=args.dataset_dir,
                           extra=parse_set(args.set), progress=not args.no_progress)
    if args.export:
        export_results(out, args.export)
        for sub in ("in_domain", f"loso_{args.held_out_site}"):
            if (Path(out) / sub).is_dir():
                export_results(Path(out) / sub, Path(args.export) / sub)
    if (Path(out) / "domain_shift.md").is_file():
        print((Path(out) / "domain_shift.md").read_text())
    return EXIT_STOPPED if res["stopped"] and not res["complete"] else 0
