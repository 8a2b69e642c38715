"""Griffe extension (mkdocs.yml, mkdocstrings options): a docstring's doctest examples
(``>>> `` lines, their ``... `` continuations and the output up to a blank line) are shown as
Python code blocks in the API reference, as they would be in a terminal; the text around them
is left as it is."""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    r"""Wrap each run of doctest lines of ``text`` in a fenced ``pycon`` block.

    >>> fence_doctests("Add:\n>>> 1 + 1\n2\n\nDone.").splitlines()
    ['Add:', '```pycon', '>>> 1 + 1', '2', '```', '', 'Done.']
    """
    out: list[str] = []
    indent: str | None = None  # the indentation of the open block, None outside one
    for line in text.split("\n"):
        stripped = line.lstrip()
        if indent is None and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
        elif indent is not None and not stripped:
            out.append(f"{indent}```")
            indent = None
        out.append(line)
    if indent is not None:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fence the doctests of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
