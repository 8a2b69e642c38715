"""How omnizoo's objects show themselves: a short one-line ``repr``, a multi-line
``_repr_pretty_`` for IPython, and an ``_repr_html_`` table for Jupyter.

One place for the three forms, so a card, a load report, a resolution, a listing and a
prediction result look alike. Every value may come from a file someone else wrote (a card's
labels, notes, licence), so every string put into HTML goes through :func:`html.escape`, and
every string put into a repr is cut to a bounded length.

>>> one_line("ModelCard", "timm:resnet50.a1_in1k", [("task", "classification"), ("top1", 80.4)])
"ModelCard('timm:resnet50.a1_in1k', task='classification', top1=80.4)"
>>> "&lt;script&gt;" in html_grid(["label"], [["<script>"]])
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MAX_REPR",
    "MAX_ROWS",
    "clip",
    "html_grid",
    "html_table",
    "one_line",
    "pretty_lines",
]

#: The most characters a one-line repr has.
MAX_REPR = 200
#: The most rows a multi-line or HTML form shows (then "... N more").
MAX_ROWS = 30
_TD = 'style="text-align:left"'


def clip(value: Any, limit: int = 60) -> str:
    """``str(value)`` on one line, cut to ``limit`` characters (``...`` marks a cut)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if type(value) is str:  # a str subclass (a box's coordinates) shows as it is
        return repr(clip(value, 60))
    return clip(value, 60)


def one_line(kind: str, head: Any, fields: Sequence[tuple[str, Any]] = ()) -> str:
    """``Kind('head', key=value, ...)``: the fields that are not None, values clipped, the
    whole at most :data:`MAX_REPR` characters (fields that do not fit are left out: ``...``)."""
    parts = [] if head is None else [_value(head)]
    parts += [f"{k}={_value(v)}" for k, v in fields if v is not None]
    out = f"{kind}("
    for i, part in enumerate(parts):
        candidate = out + (", " if i else "") + part
        if len(candidate) + len(", ...)") > MAX_REPR:
            return out + (", ...)" if i else "...)")
        out = candidate
    return out + ")"


def pretty_lines(p: Any, cycle: bool, kind: str, lines: Sequence[str]) -> None:
    """Write ``kind`` and ``lines`` to an IPython pretty printer ``p`` (one per line,
    indented; at most :data:`MAX_ROWS`); ``cycle``: the object is already being printed."""
    if cycle:
        p.text(f"{kind}(...)")
        return
    p.text(f"{kind}:")
    shown = list(lines[:MAX_ROWS])
    if len(lines) > MAX_ROWS:
        shown.append(f"... ({len(lines) - MAX_ROWS} more)")
    for line in shown:
        p.break_()
        p.text("  " + clip(line, 160))


def html_table(rows: Sequence[tuple[str, Any]], *, title: str | None = None) -> str:
    """A two-column (field, value) HTML table; every string escaped."""
    out = ["<table>"]
    if title is not None:
        out.append(f"<caption>{html.escape(clip(title, 160))}</caption>")
    for key, value in rows[: MAX_ROWS * 2]:
        if value is None:
            continue
        out.append(
            f"<tr><th {_TD}>{html.escape(str(key))}</th>"
            f"<td {_TD}>{html.escape(clip(_cell(value), 300))}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def html_grid(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> str:
    """An HTML table with a header row (at most :data:`MAX_ROWS` rows, then how many more);
    every string escaped."""
    out = ["<table>"]
    if title is not None:
        out.append(f"<caption>{html.escape(clip(title, 160))}</caption>")
    out.append("<tr>" + "".join(f"<th {_TD}>{html.escape(str(c))}</th>" for c in columns) + "</tr>")
    for row in rows[:MAX_ROWS]:
        cells = "".join(f"<td {_TD}>{html.escape(clip(_cell(v), 120))}</td>" for v in row)
        out.append(f"<tr>{cells}</tr>")
    if len(rows) > MAX_ROWS:
        more = f"... {len(rows) - MAX_ROWS} more"
        out.append(f'<tr><td colspan="{len(columns)}">{html.escape(more)}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
