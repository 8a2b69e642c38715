"""The figure cache file: parameter counts and GFLOPs counted on this machine for one card
index key (``<index key>.figures.json`` beside the index; kept by
:class:`omnizoo.registry.figures.FigureCache`).

    {"key": "<index key>",
     "figures": {"<arch>|<classes>|<C>x<H>x<W>": {"params": 25557032, "gflops": 4.11,
                                                 "problem": null}, ...}}

It is read as untrusted input: no symlink followed, size-capped, every field checked with
:mod:`omnizoo.schema`; a file that fails any check is reported as unusable (and replaced by
the next write), never partly trusted. Writes are atomic.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "k.figures.json"
>>> write_figures(path, "k", {"resnet18|1000|3x224x224": (11689512, 1.814, None)})
>>> read_figures(path, "k")
({'resnet18|1000|3x224x224': (11689512, 1.814, None)}, None)
>>> read_figures(path, "another-version")[1]  # doctest: +ELLIPSIS
"...field 'key': not this index's key 'another-version'"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .param_flops import Figure

__all__ = ["figure_name", "read_figures", "write_figures"]

_MAX_BYTES = 16 << 20  # ~100 bytes per architecture; timm has ~1,300


def figure_name(key: tuple[Any, ...]) -> str:
    """The file's name of a :func:`~omnizoo.sources.param_flops.stats_key`:
    ``arch|classes|CxHxW``."""
    arch, classes, size = key
    return f"{arch}|{classes}|{'x'.join(map(str, size))}"


def read_figures(path: Path, key: str) -> tuple[dict[str, Figure], str | None]:
    """(the figures in ``path``, None), or ({}, why) when the file is damaged, planted, too
    big or of another index key; a missing file is ({}, None)."""
    from ..errors import MetadataError
    from ..schema import Fields, parse_json
    from ..weights import fsafe

    try:  # inside OMNIZOO_HOME: no symlink followed, a FIFO never blocks, size-capped
        raw = fsafe.read_regular(path, _MAX_BYTES)
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        return {}, str(exc)
    try:
        top = Fields(parse_json(raw, str(path)), path)
        if top.text("key", max_len=1024) != key:
            raise top.error("key", f"not this index's key {key!r}")
        table = top.object("figures")
        out: dict[str, Figure] = {}
        for name in table.data:
            if not isinstance(name, str) or len(name) > 1024 or name.count("|") != 2:
                raise table.error(str(name)[:60], "not an 'arch|classes|CxHxW' name")
            row = table.object(name)
            out[name] = (
                row.optional_integer("params", lo=0, hi=10**13),
                row.optional_number("gflops", lo=0, hi=1e7),
                row.optional_text("problem", max_len=400),
            )
        return out, None
    except MetadataError as exc:
        return {}, str(exc)


def write_figures(path: Path, key: str, figures: Mapping[str, Figure]) -> None:
    """Replace ``path`` with ``figures`` (atomic; a symlink there is replaced, never written
    through). Raises OSError when it cannot."""
    from ..weights.fsafe import write_atomic

    payload = {
        "key": key,
        "figures": {
            name: {"params": p, "gflops": g, "problem": why}
            for name, (p, g, why) in sorted(figures.items())
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, separators=(",", ":")).encode("utf-8"))
