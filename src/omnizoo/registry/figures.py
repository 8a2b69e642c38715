"""Parameter counts and GFLOPs no source publishes: reused from shipped data, else counted
when asked, once per machine.

Building a card index counts nothing (it costs about what ``timm.list_models()`` does). A card
that lacks a figure gets it:

1. when the index is built, from the prebuilt index shipped for the pinned library versions
   (:func:`reuse_shipped`): a figure counted there for the same source, architecture, head
   size and input size (what a count depends on: the architecture's code is assumed unchanged
   between library versions, and the card's provenance says where the figure came from);
2. otherwise when asked for (a card shown, a sort or filter on ``params``/``gflops``,
   ``compare``): from the figure cache beside the index, ``<index key>.figures.json``, else
   counted on the meta device (:func:`omnizoo.sources.param_flops.count_figures`) and saved
   there (:class:`FigureCache`). The index lists such cards as ``pending``.

The figure cache is written atomically, read as untrusted input (every field checked with
:mod:`omnizoo.schema`; a damaged or foreign file is ignored and rewritten), and keyed by the
index key, so another library version never reads it.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sources.param_flops import COUNTED, Figure, apply_figure, needs_count, stats_key
from ..values.card import ModelCard

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = ["FigureCache", "figure_name", "reuse_shipped", "shipped_figures"]

#: What a shipped figure holds: (parameters, GFLOPs) and the provenance of each (None: absent).
Shipped = tuple[int | None, float | None, str | None, str | None]

#: Counting a sort or filter over many cards can take minutes: it is announced on stderr once
#: it has run this long (a single card takes a fraction of a second and says nothing).
ANNOUNCE_AFTER_S = 2.0
_MAX_FIGURES_BYTES = 16 << 20  # ~100 bytes per architecture; timm has ~1,300


def figure_name(key: tuple[Any, ...]) -> str:
    """The figure cache's name of a :func:`~omnizoo.sources.param_flops.stats_key`:
    ``arch|classes|CxHxW``."""
    arch, classes, size = key
    return f"{arch}|{classes}|{'x'.join(map(str, size))}"


@functools.cache
def shipped_figures(source: str) -> dict[tuple[Any, ...], tuple[str, Shipped]]:
    """:func:`stats_key` -> (the shipped index key, its counted figures) for every figure the
    prebuilt indexes of ``source`` hold that was counted on the meta device (figures a source
    published belong to that source's own tables, which a build reads anyway)."""
    from ..sources.package_data import PREBUILT_DIR, read_json

    out: dict[tuple[Any, ...], tuple[str, Shipped]] = {}
    for path in sorted(PREBUILT_DIR.glob(f"{source}-*.json.gz")):
        try:  # shipped with the package, written by scripts/build_prebuilt.py
            data = read_json(path)
            if data.get("source") != source:
                continue
            key = str(data["key"])
            for raw in data["cards"]:
                if COUNTED not in raw:  # most cards: no counted figure, not decoded
                    continue
                card = ModelCard.from_dict(json.loads(raw))
                params, gflops = _counted(card, "num_params"), _counted(card, "gflops")
                if params[0] is None and gflops[0] is None:
                    continue
                entry = (params[0], gflops[0], params[1], gflops[1])
                out.setdefault(stats_key(card), (key, entry))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
            warnings.warn(
                f"omnizoo: the prebuilt card index {path} is unreadable: {exc}", stacklevel=2
            )
    return out


def _counted(card: ModelCard, field: str) -> tuple[Any, str | None]:
    where = card.cited(field)
    if where is None or not where.startswith(COUNTED):
        return None, None
    return getattr(card, field), where


def reuse_shipped(
    adapter: SourceAdapter, key: str, cards: list[ModelCard]
) -> tuple[list[ModelCard], list[str]]:
    """``cards`` with the figures they lack taken from the shipped prebuilt indexes where
    those hold a count of the same build, and the names of the cards still lacking one (to
    count when asked). A figure from another index key says so in its provenance."""
    if not adapter.countable:
        return cards, []
    import dataclasses

    table = shipped_figures(adapter.name)
    out: list[ModelCard] = []
    pending: list[str] = []
    for card in cards:
        found = table.get(stats_key(card)) if needs_count(card) else None
        if found is not None:
            shipped_key, (params, gflops, p_where, g_where) = found
            suffix = (
                ""
                if shipped_key == key
                else f" (reused from the shipped index {shipped_key}: the same architecture, "
                "head and input size)"
            )
            provenance = dict(card.provenance)
            changes: dict[str, Any] = {}
            if card.num_params is None and params is not None:
                changes["num_params"] = params
                provenance["num_params"] = f"{p_where}{suffix}"
            if card.gflops is None and gflops is not None:
                changes["gflops"] = gflops
                provenance["gflops"] = f"{g_where}{suffix}"
            if changes:
                changes["provenance"] = tuple(provenance.items())
                card = dataclasses.replace(card, **changes)
        if needs_count(card):
            pending.append(card.name)
        out.append(card)
    return out, pending


class FigureCache:
    """The counted figures of one index key: read from ``path`` once, counted for what is
    asked and not there, and saved back (``path`` None: this process's memory only)."""

    def __init__(self, adapter: SourceAdapter, key: str, path: Path | None) -> None:
        self.adapter, self.key, self.path = adapter, key, path
        self._known: dict[str, Figure] | None = None
        self._lock = threading.Lock()

    def fill(self, cards: Sequence[ModelCard]) -> list[ModelCard]:
        """``cards`` with the figures they lack, from this cache or counted (and saved)."""
        with self._lock:
            known = self._load()
            todo = [c for c in cards if figure_name(stats_key(c)) not in known]
            if todo:
                where = "memory" if self.path is None else self.path
                counted = _count(self.adapter, todo, f"once per machine, kept in {where}")
                fresh = {figure_name(k): v for k, v in counted.items()}
                known.update(fresh)
                self._save(fresh)
            return [apply_figure(c, known[figure_name(stats_key(c))]) for c in cards]

    def _load(self) -> dict[str, Figure]:
        if self._known is None:
            self._known = self._read(warn=True)
        return self._known

    def _read(self, *, warn: bool) -> dict[str, Figure]:
        """The file's figures; {} when it is missing, and when it is damaged, planted or of
        another key (then it is not trusted, and the next save replaces it)."""
        if self.path is None:
            return {}
        from ..errors import MetadataError
        from ..schema import Fields, parse_json
        from ..weights import fsafe

        try:  # inside OMNIZOO_HOME: no symlink followed, a FIFO never blocks, size-capped
            raw = fsafe.read_regular(self.path, _MAX_FIGURES_BYTES)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            return self._distrust(exc, warn)
        try:
            top = Fields(parse_json(raw, str(self.path)), self.path)
            if top.text("key", max_len=1024) != self.key:
                raise top.error("key", f"not this index's key {self.key!r}")
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
            return out
        except MetadataError as exc:
            return self._distrust(exc, warn)

    def _distrust(self, exc: Exception, warn: bool) -> dict[str, Figure]:
        if warn:
            warnings.warn(
                f"omnizoo: the figure cache {self.path} is not usable ({exc}); "
                "its figures are counted again and the file replaced",
                stacklevel=5,
            )
        return {}

    def _save(self, fresh: dict[str, Figure]) -> None:
        """Add ``fresh`` to the file (re-read first: another process may have added some)."""
        if self.path is None:
            return
        from ..weights.fsafe import write_atomic

        merged = {**self._read(warn=False), **fresh}
        payload = {
            "key": self.key,
            "figures": {
                name: {"params": p, "gflops": g, "problem": why}
                for name, (p, g, why) in sorted(merged.items())
            },
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        except OSError as exc:  # a read-only home: the figures stay in this process
            warnings.warn(
                f"omnizoo: cannot write the figure cache {self.path}: {exc}", stacklevel=2
            )


def _count(
    adapter: SourceAdapter, cards: Sequence[ModelCard], why: str
) -> dict[tuple[Any, ...], Figure]:
    """Count ``cards`` on the meta device, announcing it on stderr when it takes long
    (``OMNIZOO_PROGRESS=0`` silences it); torch's and numpy's random states are kept."""
    from ..settings import get_settings
    from ..sources.param_flops import count_figures
    from .index_build import rng_untouched

    stream = None if get_settings().progress is False else sys.stderr
    with rng_untouched():
        return count_figures(
            adapter, cards, stream=stream, announce_after=ANNOUNCE_AFTER_S, why=why
        )
