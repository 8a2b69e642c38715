"""One source's card index in memory: a row per card for listing, sorting and name
resolution, and the cards themselves, each decoded from its JSON text on first use.

:class:`SourceIndex` is what :func:`omnizoo.registry.index.load_index` returns;
:func:`entry` makes a card's row and :func:`compact` the card dict an index file holds (its
fields equal to the defaults dropped).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..values.card import ModelCard

__all__ = [
    "COUNTED_METRICS",
    "METRIC_FIELDS",
    "Entry",
    "LazyCards",
    "SourceIndex",
    "compact",
    "entry",
]


class FigureSource(Protocol):
    """What fills a card's pending figures (:class:`omnizoo.registry.figures.FigureCache`)."""

    def fill(self, cards: Sequence[ModelCard]) -> list[ModelCard]: ...


class LazyCards(Mapping[str, dict[str, Any]]):
    """Card name -> card dict, each decoded from its JSON text on first access.

    The timm index holds ~1,800 cards and a process usually needs a handful: decoding one JSON
    string per card asked for is 2.5x faster to load than one document of nested objects.
    """

    def __init__(self, items: dict[str, str | dict[str, Any]]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> dict[str, Any]:
        value = self._items[name]
        if isinstance(value, str):
            value = json.loads(value)
            self._items[name] = value
        return value

    def __contains__(self, name: object) -> bool:  # without decoding (Mapping's would)
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


# One row per card in the index file: what listing, sorting, filtering and name resolution
# need without decoding the card itself: arch, tag, is_default, task, has_weights, then the
# metrics (top1, top5, num_params, gflops; None when unknown).
Entry = tuple[Any, ...]
#: metric name -> position in an entry row
METRIC_FIELDS = {"top1": 5, "top5": 6, "params": 7, "gflops": 8}


#: the metrics counted on the meta device where no source publishes them
COUNTED_METRICS = ("params", "gflops")


def entry(card: Mapping[str, Any]) -> Entry:
    params = card.get("num_params")
    return (
        str(card["arch"]),
        card.get("tag"),
        bool(card.get("is_default")),
        str(card.get("task") or "classification"),
        card.get("weights") is not None,
        card.get("top1"),
        card.get("top5"),
        None if params is None else params / 1e6,
        card.get("gflops"),
    )


@dataclass
class SourceIndex:
    """The cards of one source, as raw dicts turned into :class:`ModelCard` on demand."""

    source: str
    key: str
    raw: Mapping[str, dict[str, Any]]  # card name -> card dict (decoded lazily)
    # arch -> (tags in source order, default tag or None, task)
    archs: dict[str, tuple[tuple[str, ...], str | None, str]] = field(default_factory=dict)
    # card name -> task, for every card with a tag and a weights file (list_models(pretrained))
    weighted: dict[str, str] = field(default_factory=dict)
    # card name -> (top1, top5, params in millions, gflops), for sorting and filtering
    metrics: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    _cards: dict[str, ModelCard] = field(default_factory=dict, repr=False)
    # lower-cased arch -> arch, for case-insensitive lookups
    _lower: dict[str, str] = field(default_factory=dict, repr=False)
    # the on-disk file it was read from (None: built in this process) and how to build the
    # index afresh: a damaged card in that file makes the index rebuild itself (:meth:`card`)
    path: Path | None = field(default=None, repr=False)
    rebuild: Callable[[str, Path | None], SourceIndex] | None = field(default=None, repr=False)
    # the modules the source needs and lacks (then the index is empty; see load_index)
    missing: tuple[str, ...] = ()
    # the rows it was made from, and its merge with the source's session cards
    entries: list[Entry] = field(default_factory=list, repr=False)
    _session: tuple[Any, SourceIndex] | None = field(default=None, repr=False)
    # cards whose parameters/GFLOPs are counted when asked (:meth:`fill`), and by what
    pending: set[str] = field(default_factory=set, repr=False)
    figures: FigureSource | None = field(default=None, repr=False)
    _filled: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def from_cards(cls, source: str, key: str, cards: list[dict[str, Any]]) -> SourceIndex:
        return cls.from_entries(source, key, [entry(c) for c in cards], list(cards))

    @classmethod
    def from_entries(
        cls,
        source: str,
        key: str,
        entries: list[Entry],
        cards: Sequence[str | dict[str, Any]],
    ) -> SourceIndex:
        items: dict[str, str | dict[str, Any]] = {}
        tags: dict[str, list[str]] = {}
        default: dict[str, str | None] = {}
        task: dict[str, str] = {}
        weighted: dict[str, str] = {}
        metrics: dict[str, tuple[Any, ...]] = {}
        for row, card in zip(entries, cards, strict=True):
            arch, tag, is_default, card_task, has_weights = row[:5]
            name = f"{source}:{arch}" + (f".{tag}" if tag else "")
            items[name] = card
            metrics[name] = tuple(row[5:9])
            tags.setdefault(arch, [])
            if tag:
                tags[arch].append(tag)
                if has_weights:
                    weighted[name] = card_task
            if is_default or arch not in task:
                task[arch] = card_task
            if is_default:
                default[arch] = tag
        archs = {
            a: (tuple(t), default.get(a, t[0] if t else None), task[a]) for a, t in tags.items()
        }
        idx = cls(source, key, LazyCards(items), archs, weighted, metrics, entries=list(entries))
        idx._lower = {a.lower(): a for a in archs}
        return idx

    def with_session_cards(self, cards: Sequence[ModelCard]) -> SourceIndex:
        """This index plus cards that exist only in this process (a card of the same
        architecture replaces this index's); cached while ``cards`` is the same object."""
        if not cards:
            return self
        if self._session is not None and self._session[0] is cards:
            return self._session[1]
        dicts = [compact(c.to_dict()) for c in cards]
        live = [entry(d) for d in dicts]
        archs = {e[0] for e in live}
        keep = [i for i, e in enumerate(self.entries) if e[0] not in archs]
        items = self.raw._items if isinstance(self.raw, LazyCards) else dict(self.raw)
        base = list(items.values())
        rows: list[str | dict[str, Any]] = [base[i] for i in keep]
        rows.extend(dicts)
        merged = SourceIndex.from_entries(
            self.source, self.key, [self.entries[i] for i in keep] + live, rows
        )
        names = list(items)
        # never a session card; filled ones again (from the figure cache's memory)
        merged.pending = (self.pending | self._filled) & {names[i] for i in keep}
        merged.figures = self.figures
        self._session = (cards, merged)
        return merged

    def card(self, name: str) -> ModelCard:
        """The card ``name``, with its parameters and GFLOPs counted if they are pending."""
        card = self._decoded(name)
        if name in self.pending:
            self.fill([name])
            card = self._cards[name]
        return card

    def fill(self, names: Iterable[str]) -> None:
        """Get the pending figures of the cards ``names`` in one batch (the figure cache, else
        counted): what a sort or filter on ``params``/``gflops`` needs first."""
        todo = [n for n in dict.fromkeys(names) if n in self.pending]
        if not todo or self.figures is None:
            return
        filled = self.figures.fill([self._decoded(n) for n in todo])
        for name, card in zip(todo, filled, strict=True):
            self._cards[name] = card
            row = self.metrics.get(name, (None,) * 4)
            params = None if card.num_params is None else card.num_params / 1e6
            self.metrics[name] = (*row[:2], params, card.gflops)
            self.pending.discard(name)
            self._filled.add(name)

    def _decoded(self, name: str) -> ModelCard:
        """The card as the index file holds it."""
        card = self._cards.get(name)
        if card is None:
            if name not in self.raw:
                raise KeyError(name)
            try:
                card = ModelCard.from_dict(self.raw[name])
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A card string damaged inside an index file that still parses as a whole
                # (a torn sector, a bad edit): rebuild the index once instead of failing on
                # every call. An index built in this process is not rebuilt again.
                if self.path is None or self.rebuild is None:
                    raise
                self._heal(exc)
                return self._decoded(name)
            self._cards[name] = card
        return card

    def _heal(self, cause: BaseException) -> None:
        """Replace this index (and its file) with a freshly built one."""
        path, self.path = self.path, None
        warnings.warn(
            f"omnizoo: the card index {path} is damaged ({type(cause).__name__}: {cause}); "
            "rebuilding it",
            stacklevel=4,
        )
        assert self.rebuild is not None  # (checked by the caller)
        fresh = self.rebuild(self.source, path)
        self.raw, self.archs, self.weighted = fresh.raw, fresh.archs, fresh.weighted
        self.metrics = fresh.metrics
        self._lower, self._cards = fresh._lower, {}
        self.entries, self._session = fresh.entries, None
        self.pending, self.figures, self._filled = fresh.pending, fresh.figures, set()

    def default_name(self, arch: str) -> str:
        """The card an architecture resolves to (its default weights, or the bare card)."""
        _tags, default, _task = self.archs[arch]
        return f"{self.source}:{arch}" + (f".{default}" if default else "")

    def metric(self, name: str, key: str) -> float | None:
        """``top1``/``top5``/``params`` (millions)/``gflops`` of a card, from the index row."""
        if key in COUNTED_METRICS and name in self.pending:
            self.fill([name])
        row = self.metrics.get(name)
        if row is None or key not in METRIC_FIELDS:
            return None
        value = row[METRIC_FIELDS[key] - 5]
        return None if value is None else float(value)

    def find_arch(self, arch: str) -> str | None:
        if arch in self.archs:
            return arch
        return self._lower.get(arch.lower())

    def cards(self) -> Iterator[ModelCard]:
        """Every card, its pending figures got first in one batch."""
        self.fill(list(self.raw))
        for name in self.raw:
            yield self.card(name)


_DEFAULTS: dict[str, Any] = {}


def compact(card: dict[str, Any]) -> dict[str, Any]:
    """Drop fields equal to their defaults (``ModelCard.from_dict`` restores them): the
    timm index is read on every first ``get_card`` of a process, so its size matters."""
    if not _DEFAULTS:
        _DEFAULTS.update(ModelCard(source="", arch="").to_dict())
    out = {}
    for key, value in card.items():
        if key in ("source", "arch"):
            out[key] = value
        elif key == "weights" and value is not None:
            out[key] = {k: v for k, v in value.items() if v is not None}
        elif key == "data":
            base = _DEFAULTS["data"]
            data = {k: v for k, v in value.items() if base.get(k, object()) != v}
            if data:
                out[key] = data
        elif _DEFAULTS.get(key, object()) != value:
            out[key] = value
    return out
