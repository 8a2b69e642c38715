"""Reading the accuracy tables a library's README publishes, from the installed distribution.

A wheel's ``METADATA`` carries the project's README as its long description (pretrainedmodels
and efficientnet_pytorch both do), so the figures a card cites are the ones the installed
version published, read when the cards are built, never copied by hand.

>>> table_rows("intro\\n| a | b |\\n|---|---|\\n| x | 1.5 |\\n\\ntext")
[['a', 'b'], ['x', '1.5']]
>>> link_text("[SE-ResNet50](https://example.org/x)")
'SE-ResNet50'
"""

from __future__ import annotations

import re

__all__ = ["distribution_readme", "link_text", "table_rows"]

_LINK = re.compile(r"^\[([^\]]+)\]\([^)]*\)$")


def distribution_readme(distribution: str) -> tuple[str, str]:
    """(README text, version) of an installed distribution ("" when it ships none)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "", ""
    text = dist.read_text("METADATA") or ""
    _headers, _, body = text.partition("\n\n")
    return body, str(dist.version)


def table_rows(text: str) -> list[list[str]]:
    """Every Markdown table row of ``text`` (cells stripped), separator rows left out."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if "|" not in line or line.startswith("```"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c) and any(cells):
            continue
        if len(cells) >= 2:
            rows.append(cells)
    return rows


def link_text(cell: str) -> str | None:
    """The text of a Markdown link cell (``[text](url)``), None for plain text."""
    found = _LINK.match(cell.strip())
    return found.group(1) if found else None
