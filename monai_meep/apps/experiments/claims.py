# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The paper's claims, each checked against the paired statistics of a Table 1 folder (:mod:`.stats`).

A claim is a set of comparisons (row vs reference) on some metrics. For a claim that a row is **better**, a
comparison *holds* when its 95 % interval excludes 0 on the better side and is *contradicted* when it excludes 0 on
the worse side (docs/results.md). For a claim that a row is **no worse** (MEEP "does not degrade" DSC or HD), a
comparison *holds* when the whole interval stays above a stated non-inferiority margin (a loss of at most DSC 0.01,
or HD 5 % of the reference mean), is *contradicted* when the whole interval lies beyond it (a loss larger than the
margin), and is *inconclusive* otherwise; a loss smaller than the margin therefore does not contradict the claim even
when its interval excludes 0 (``paired.md`` still shows it).
A claim holds for a task when every comparison holds, is contradicted when every one is contradicted, is *mixed* when
some hold and some are contradicted, *partly holds* / *partly contradicted* when the rest are inconclusive, and is
*inconclusive* when every one is; the counts are always shown.

The paper's Table 1 (UNet, real data) is kept here for orientation only: the phantoms are not the paper's data, so a
different verdict says what these phantoms and budgets show, not that the paper is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CLAIMS", "PAPER_TABLE1", "Claim", "check_claims", "claims_markdown", "claims_summary"]

_MEEP = ("+H(Y_w)", "+KL(Y_w)")
_BASES = ("Dice", "CE")
_CAL = ("Brier (x1e-4)", "Brier+", "ECE (x1e-3)")

# non-inferiority margins of "no worse" claims: (absolute, relative to the reference mean)
MARGINS: dict[str, tuple[float, float]] = {"DSC": (0.01, 0.0), "HD (mm)": (0.0, 0.05), "HD95 (mm)": (0.0, 0.05)}


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: ``kind`` "better" or "no_worse" for each ``(row, reference)`` on each metric."""

    text: str
    comparisons: tuple[tuple[str, str], ...]
    metrics: tuple[str, ...]
    kind: str = "better"


def _meep_vs(refs: Sequence[str] | None = None) -> tuple[tuple[str, str], ...]:
    """Each MEEP row against ``base + ref`` for each ref (None: against the base loss itself)."""
    return tuple((b + m, b + r) for b in _BASES for m in _MEEP for r in (refs or ("",)))


CLAIMS: list[Claim] = [
    Claim("MEEP improves the Brier score over its base loss", _meep_vs(), ("Brier (x1e-4)",)),
    Claim("MEEP improves Brier+ over its base loss", _meep_vs(), ("Brier+",)),
    Claim("MEEP improves ECE over its base loss", _meep_vs(), ("ECE (x1e-3)",)),
    Claim("MEEP does not degrade DSC", _meep_vs(), ("DSC",), "no_worse"),
    Claim("MEEP does not degrade HD", _meep_vs(), ("HD (mm)",), "no_worse"),
    Claim(
        "The all-voxel penalty H(Y) improves calibration over its base loss",
        tuple((b + "+H(Y)", b) for b in _BASES),
        ("Brier (x1e-4)", "ECE (x1e-3)"),
    ),
    Claim("MEEP is better calibrated than the all-voxel penalty H(Y)", _meep_vs(["+H(Y)"]), _CAL),
    Claim(
        "Focal loss improves calibration over the vanilla losses",
        (("FL", "Dice"), ("FL", "CE")),
        ("Brier (x1e-4)", "ECE (x1e-3)"),
    ),
    Claim("MEEP is better calibrated than focal loss", tuple((b + m, "FL") for b in _BASES for m in _MEEP), _CAL),
    Claim(
        "MEEP improves ECE more than post-hoc Platt scaling / isotonic regression",
        _meep_vs(["+PS", "+IR"]),
        ("ECE (x1e-3)",),
    ),
    Claim(
        "Dice + KL(Y_w) is the best-calibrated Dice variant",
        tuple(("Dice+KL(Y_w)", "Dice" + r) for r in ("", "+PS", "+IR", "+H(Y)", "+H(Y_w)")),
        ("Brier (x1e-4)", "ECE (x1e-3)"),
    ),
]

# The paper's Table 1 (UNet, real WMH / LA data): row -> (DSC, HD, Brier x1e-4, Brier+, ECE x1e-3); orientation only.
_COLS = ("DSC", "HD (mm)", "Brier (x1e-4)", "Brier+", "ECE (x1e-3)")
_PAPER = {
    "wmh": {
        "Dice": (0.770, 24.041, 6.717, 0.257, 0.667),
        "Dice+PS": (0.763, 24.151, 6.187, 0.271, 1.563),
        "Dice+IR": (0.770, 24.176, 5.541, 0.212, 1.539),
        "Dice+H(Y)": (0.769, 21.608, 6.751, 0.249, 0.670),
        "Dice+H(Y_w)": (0.758, 21.243, 5.874, 0.244, 0.510),
        "Dice+KL(Y_w)": (0.770, 20.804, 5.564, 0.231, 0.471),
        "CE": (0.755, 21.236, 6.462, 0.280, 0.620),
        "CE+PS": (0.763, 21.008, 5.459, 0.214, 1.631),
        "CE+IR": (0.764, 21.202, 5.430, 0.210, 1.622),
        "CE+H(Y)": (0.760, 23.124, 6.369, 0.242, 4.100),
        "CE+H(Y_w)": (0.770, 19.544, 5.417, 0.217, 0.436),
        "CE+KL(Y_w)": (0.777, 22.298, 5.331, 0.213, 0.422),
        "FL": (0.753, 21.931, 5.760, 0.243, 0.438),
    },
    "la": {
        "Dice": (0.886, 28.282, 29.182, 0.107, 28.861),
        "Dice+PS": (0.884, 26.565, 24.953, 0.114, 16.346),
        "Dice+IR": (0.883, 26.699, 24.617, 0.111, 16.303),
        "Dice+H(Y)": (0.885, 29.811, 29.019, 0.109, 28.458),
        "Dice+H(Y_w)": (0.873, 29.374, 24.709, 0.103, 18.796),
        "Dice+KL(Y_w)": (0.881, 28.415, 23.182, 0.095, 15.587),
        "CE": (0.878, 27.163, 24.447, 0.108, 18.383),
        "CE+PS": (0.878, 27.203, 23.458, 0.100, 16.576),
        "CE+IR": (0.878, 27.223, 23.544, 0.102, 16.421),
        "CE+H(Y)": (0.881, 29.464, 23.539, 0.096, 15.590),
        "CE+H(Y_w)": (0.883, 28.560, 22.506, 0.093, 15.242),
        "CE+KL(Y_w)": (0.876, 28.736, 24.085, 0.105, 17.348),
        "FL": (0.881, 28.599, 23.928, 0.095, 25.998),
    },
}
PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    task: {row: dict(zip(_COLS, vals, strict=True)) for row, vals in rows.items()} for task, rows in _PAPER.items()
}


def _component(r: Any, kind: str) -> str:
    """``holds`` / ``contradicted`` / ``inconclusive`` of one paired comparison ``r`` (a row of paired.csv)."""
    low, high, higher = float(r["ci_low"]), float(r["ci_high"]), bool(r["higher_is_better"])
    if kind == "better":
        return {"better": "holds", "worse": "contradicted"}.get(r["verdict"], "inconclusive")
    # "no worse" (non-inferiority): judged against the margin, not against 0, so that a loss too small to matter but
    # detectable with many pairs (e.g. DSC -0.002) is not read as a degradation
    absolute, relative = MARGINS.get(r["metric"], (0.0, 0.0))
    margin = absolute + relative * abs(float(r["mean_reference"]))
    worst, best = (low, high) if higher else (-high, -low)  # plausible changes as gains (negative: a loss)
    if not (math.isfinite(worst) and math.isfinite(best)):
        return "inconclusive"
    if worst > -margin:
        return "holds"
    return "contradicted" if best < -margin else "inconclusive"


def check_claims(table: Any, task: str | None = None, claims: Sequence[Claim] = CLAIMS) -> list[dict[str, Any]]:
    """Each claim with its comparisons' verdicts and a summary verdict, from a :func:`.stats.paired_table`.

    Returns:
        ``[{"claim", "kind", "verdict", "counts", "components": [{row, reference, metric, difference, ci_low,
        ci_high, p, seeds, verdict, paper_difference}, ...]}, ...]``; a claim with no comparison present is
        ``"not run"``.
    """
    paper = PAPER_TABLE1.get(task or "", {})
    out = []
    for claim in claims:
        comps = []
        for row, ref in claim.comparisons:
            for metric in claim.metrics:
                hit = table[(table["row"] == row) & (table["reference"] == ref) & (table["metric"] == metric)]
                if len(hit) == 0:
                    continue
                r = hit.iloc[0]
                pd_ = (
                    paper[row][metric] - paper[ref][metric]
                    if row in paper and ref in paper and metric in paper[row]
                    else math.nan
                )
                comps.append(
                    {
                        "row": row,
                        "reference": ref,
                        "metric": metric,
                        "difference": float(r["mean_difference"]),
                        "ci_low": float(r["ci_low"]),
                        "ci_high": float(r["ci_high"]),
                        "p": float(r["wilcoxon_p"]),
                        "seeds": f"{int(r['seeds_better'])}/{int(r['n_seeds'])}",
                        "verdict": _component(r, claim.kind),
                        "paper_difference": pd_,
                    }
                )
        counts = {v: sum(c["verdict"] == v for c in comps) for v in ("holds", "contradicted", "inconclusive")}
        if not comps:
            verdict = "not run"
        elif counts["holds"] == len(comps):
            verdict = "holds"
        elif counts["contradicted"] == len(comps):
            verdict = "contradicted"
        elif counts["holds"] and counts["contradicted"]:
            verdict = "mixed"
        elif counts["holds"]:  # the others inconclusive
            verdict = "partly holds"
        elif counts["contradicted"]:
            verdict = "partly contradicted"
        else:
            verdict = "inconclusive"
        out.append({"claim": claim.text, "kind": claim.kind, "verdict": verdict, "counts": counts, "components": comps})
    return out


def _num(v: float) -> str:
    return f"{v:+.3f}" if math.isfinite(v) else "n/a"


def claims_markdown(table: Any, title: str = "", task: str | None = None) -> str:
    """``claims.md``: a summary line per claim, then each claim's comparisons beside the paper's difference."""
    checked = check_claims(table, task)
    lines = [
        f"# The paper's claims{': ' + title if title else ''}",
        "",
        "Verdicts from the paired 95 % intervals (`paired.csv`): a comparison *holds* when its interval excludes "
        "0 on the claimed side and is *contradicted* when it excludes 0 on the other side, else *inconclusive*. "
        '"Does not degrade" is a non-inferiority claim with a margin (a loss of at most DSC 0.01 / HD 5 % of the '
        "reference): it holds when the whole interval is within the margin, is contradicted when the whole interval "
        "is beyond it. 'paper' is the same difference in the paper's Table 1 (UNet, real data), for orientation "
        "only.",
        "",
        "| claim | verdict | holds / contradicted / inconclusive |",
        "|:---|:---|:---|",
    ]
    for c in checked:
        k = c["counts"]
        lines.append(
            f"| {c['claim']} | **{c['verdict']}** | {k['holds']} / {k['contradicted']} / {k['inconclusive']} |"
        )
    lines.append("")
    for c in checked:
        if not c["components"]:
            continue
        lines += [
            f"## {c['claim']}: {c['verdict']}",
            "",
            "| row | reference | metric | difference | 95 % CI | p | seeds better | paper | verdict |",
            "|:---|:---|:---|---:|:---:|---:|---:|---:|:---|",
        ]
        for x in c["components"]:
            p = f"{x['p']:.3g}" if math.isfinite(x["p"]) else "n/a"
            lines.append(
                f"| {x['row']} | {x['reference']} | {x['metric']} | {_num(x['difference'])} | "
                f"[{_num(x['ci_low'])}, {_num(x['ci_high'])}] | {p} | {x['seeds']} | "
                f"{_num(x['paper_difference'])} | {x['verdict']} |"
            )
        lines.append("")
    return "\n".join(lines)


def claims_summary(tables: dict[str, tuple[Any, str | None]]) -> str:
    """One markdown table of every claim's verdict across several results folders.

    Args:
        tables: column label (e.g. ``"LA, UNet"``) -> (its :func:`.stats.paired_table`, its task or None).

    Returns:
        A table with a row per claim and a column per folder: ``verdict (holds / contradicted / inconclusive)``.
    """
    checked = {label: check_claims(table, task) for label, (table, task) in tables.items()}
    labels = list(checked)
    lines = ["| claim | " + " | ".join(labels) + " |", "|:---|" + "|".join(":---" for _ in labels) + "|"]
    for i, claim in enumerate(CLAIMS):
        cells = []
        for label in labels:
            c = checked[label][i]
            k = c["counts"]
            cells.append(
                c["verdict"]
                if c["verdict"] == "not run"
                else f"**{c['verdict']}** ({k['holds']} / {k['contradicted']} / {k['inconclusive']})"
            )
        lines.append(f"| {claim.text} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
