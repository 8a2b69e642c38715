"""Tables that fit the terminal: ``compare``'s side-by-side view and ``benchmark``'s rows.

The width is :func:`shutil.get_terminal_size` (``COLUMNS`` when set, 80 when the output is
not a terminal). A side-by-side table wider than that is cut into blocks of as many items as
fit (the field names repeated for each block) and each cell is wrapped inside its column, as
``git log --stat`` and ``kubectl`` fit their output rather than let the terminal fold it.

>>> print("\\n".join(side_by_side([("name", ["a", "b"]), ("size", ["1", "22"])], width=40)))
name  a  b
size  1  22
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

__all__ = ["columns", "side_by_side", "terminal_width"]

_GAP = "  "


def terminal_width() -> int:
    """The terminal's width in characters (``COLUMNS``; 80 when unknown), at least 40."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def side_by_side(
    rows: Sequence[tuple[str, Sequence[str]]], width: int, *, min_column: int = 14
) -> list[str]:
    """Lines of a table with one row per field (its name first) and one column per item,
    fitted to ``width``: items in blocks that fit, each cell wrapped in its column. The first
    row (the item's name) is never wrapped: a column is at least as wide as it (a name cut in
    two cannot be copied back into a command), so fewer items share a block instead.

    >>> rows = [("name", ["timm:resnet50.a1_in1k", "torchvision:resnet50.IMAGENET1K_V2"])]
    >>> print("\\n".join(side_by_side(rows, width=50)))
    name  timm:resnet50.a1_in1k
    <BLANKLINE>
    name  torchvision:resnet50.IMAGENET1K_V2
    """
    if not rows:
        return []
    label = max(len(name) for name, _ in rows)
    count = len(rows[0][1])
    natural = [max(len(values[i]) for _, values in rows) for i in range(count)]
    room = max(min_column, width - label - len(_GAP))
    # the narrowest a column may be: its name whole (unless the name alone is wider than room)
    floor = [min(room, max(min_column, len(rows[0][1][i]))) for i in range(count)]
    floor = [min(f, n) for f, n in zip(floor, natural, strict=True)]
    lines: list[str] = []
    start = 0
    while start < count:
        # as many items as fit at their floor (then widened to their natural width as room
        # allows): side by side is what a comparison is for, so wrap before splitting
        end, used = start + 1, floor[start]
        while end < count and used + len(_GAP) + floor[end] <= room:
            used += len(_GAP) + floor[end]
            end += 1
        block = list(range(start, end))
        # the room left over the floors goes to the columns that want it, evenly
        widths = [floor[i] for i in block]
        spare = room - len(_GAP) * (len(block) - 1) - sum(widths)
        while spare > 0:
            wanting = [k for k, i in enumerate(block) if widths[k] < natural[i]]
            if not wanting:
                break
            step = max(1, spare // len(wanting))
            for k in wanting:
                add = min(step, natural[block[k]] - widths[k], spare)
                widths[k] += add
                spare -= add
        if lines:
            lines.append("")
        for name, values in rows:
            cells = [_wrap(values[i], w) for i, w in zip(block, widths, strict=True)]
            for k in range(max(len(c) for c in cells)):
                head = name if k == 0 else ""
                parts = [
                    (c[k] if k < len(c) else "").ljust(w)
                    for c, w in zip(cells, widths, strict=True)
                ]
                lines.append(f"{head.ljust(label)}{_GAP}{_GAP.join(parts)}".rstrip())
        start = end
    return lines


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], *, right: int = 0) -> list[str]:
    """Lines of a plain table; the last ``right`` columns (numbers) are right-aligned.

    >>> print("\\n".join(columns(["a", "ms"], [["x", "1.5"], ["yy", "10.25"]], right=1)))
    a      ms
    x     1.5
    yy  10.25
    """
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    first_right = len(header) - right
    out = []
    for r in table:
        cells = [
            v.rjust(w) if i >= first_right else v.ljust(w)
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append(_GAP.join(cells).rstrip())
    return out
