# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""``report.html``: one self-contained page (tables as HTML, figures as inline base64 PNGs, inline CSS; no script,
no external resource), so it opens the same in any browser, offline, attached to an e-mail or a CI artefact."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

import pandas as pd

from .tables import format_value

__all__ = ["render_html"]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; max-width: 60em; } .figs img { max-width: 48%; margin: 0.3em; border: 1px solid #ddd; }
.skipped td { background: #fff3f3; }
"""


def _table(df: pd.DataFrame, css_class: str = "") -> str:
    return df.to_html(index=False, escape=True, na_rep="n/a", formatters=None, float_format=format_value,
                      classes=css_class or None, border=0)  # fmt: skip


def render_html(
    title: str,
    notes: Sequence[str],
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, bytes],
    skipped: pd.DataFrame | None = None,
    after: Mapping[str, pd.DataFrame] | None = None,
) -> str:
    """The page: a title, notes, the tables in order, the skipped cases and the figures.

    Args:
        title: page heading.
        notes: paragraphs under the heading (the convention, what pooled means, ...), plain text.
        tables: ``{section heading: DataFrame}``.
        figures: ``{file name: PNG bytes}``, shown two per row in this order.
        skipped: ``case`` / ``file`` / ``reason`` of the cases not scored.
        after: tables shown after the figures (the long per-case table).

    Returns:
        The HTML text.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(n)}</p>' for n in notes),
    ]
    for heading, df in tables.items():
        parts += [f"<h2>{html.escape(heading)}</h2>", _table(df)]
    if skipped is not None and len(skipped):
        parts += [f"<h2>Skipped cases ({len(skipped)})</h2>", _table(skipped, "skipped")]
    if figures:
        parts.append('<h2>Figures (pooled over cases)</h2><div class="figs">')
        for name, png in figures.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<img alt="{html.escape(name)}" title="{html.escape(name)}" src="data:image/png;base64,{data}">'
            )
        parts.append("</div>")
    for heading, df in (after or {}).items():
        parts += [f"<h2>{html.escape(heading)}</h2>", _table(df)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
