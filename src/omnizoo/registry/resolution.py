"""How a name becomes a card: ``resolve``/``explain``, ``list_sources`` and the indexes in
resolution order.

All of it reads the per-source card indexes (:mod:`omnizoo.registry.index`); after the first
use none of it imports torch, timm or torchvision.

Resolution of a name (see docs/registry.md):

1. :func:`~omnizoo.values.names.parse_name` splits off the ``source:`` prefix, if any.
2. For each source (only the named one, else ``settings.source_order``), the body is read as
   ``arch[.tag]`` with the longest architecture name that source knows
   (:func:`~omnizoo.values.names.split_body`).
3. A source is a candidate when it knows the arch; it *matches* when it also has the tag (no
   tag: the arch's default weights, or the bare architecture when it has none; torchvision's
   ``DEFAULT`` is accepted as a tag). The first matching source in order wins.
4. Nothing matches: :class:`UnknownModelError` with close names (difflib), or
   :class:`NoPretrainedWeightsError` when the arch exists but not the tag.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    DependencyError,
    NoPretrainedWeightsError,
    OmnizooError,
    UnknownModelError,
    UnknownSourceError,
)
from ..settings import get_settings
from ..sources.table import adapter_path, resolution_order
from ..values.card import ModelCard
from ..values.names import format_name, parse_name, split_body

if TYPE_CHECKING:
    from .source_index import SourceIndex

__all__ = ["Candidate", "Resolution", "explain", "list_sources", "resolve", "source_indexes"]


@dataclass(frozen=True)
class Candidate:
    """One source's reading of a name."""

    source: str
    arch: str
    tag: str | None
    matched: bool
    reason: str
    card_name: str | None = None


@dataclass(frozen=True)
class Resolution:
    """How a name was resolved: every candidate source, the winner and why.

    >>> from omnizoo import explain
    >>> explain("resnet50").card.source
    'torchvision'

    Raises:
        Nothing: a record made by :func:`explain`.
    """

    name: str
    card: ModelCard
    candidates: tuple[Candidate, ...]
    reason: str
    source_order: tuple[str, ...]

    @property
    def winner(self) -> str:
        """The fully qualified name of the chosen card."""
        return self.card.name

    def __repr__(self) -> str:  # the card's own repr is short too, but one name says it
        from ..values.display import one_line

        matched = sum(c.matched for c in self.candidates)
        return one_line(
            "Resolution",
            self.name,
            [("winner", self.winner), ("candidates", len(self.candidates)), ("matched", matched)],
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from ..values.display import pretty_lines

        pretty_lines(p, cycle, "Resolution", str(self).splitlines())

    def _repr_html_(self) -> str:
        from ..values.display import html_grid

        rows = [
            ("*" if c.card_name == self.winner else "+" if c.matched else "-", c.source, c.reason)
            for c in self.candidates
        ]
        title = f"{self.name} -> {self.winner} ({self.reason})"
        return html_grid(["", "source", "reading"], rows, title=title)

    def __str__(self) -> str:
        lines = [f"{self.name!r} -> {self.winner}", f"  why: {self.reason}"]
        lines.append("  source order: " + ", ".join(self.source_order))
        for c in self.candidates:
            mark = "*" if c.card_name == self.winner else ("+" if c.matched else "-")
            lines.append(f"  {mark} {c.source}: {c.reason}")
        return "\n".join(lines)


def list_sources() -> list[str]:
    """The source prefixes, in the resolution order in force.

    >>> list_sources()[:2]
    ['torchvision', 'timm']

    Raises:
        ConfigurationError: OMNIZOO_SOURCE_ORDER (read once, by the settings) is malformed.
    """
    return list(resolution_order(get_settings().source_order))


def _load_index(source: str) -> SourceIndex:
    # imported when an index is read: a name resolved by an earlier process (.resolved)
    # needs none of the index machinery
    from .index import load_index

    return load_index(source)


def source_indexes(source: str | None, *, strict: bool = False) -> list[SourceIndex]:
    """The card indexes of ``source``, or of every source in the resolution order (a source
    that cannot load is skipped with a warning unless ``strict``)."""
    if source is not None:
        if adapter_path(source) is None:
            raise UnknownSourceError(
                source,
                message=f"unknown source {source!r}; sources: {', '.join(list_sources())}",
            )
        return [_load_index(source)]
    out = []
    for s in list_sources():
        try:
            out.append(_load_index(s))
        except OmnizooError as exc:
            if strict:
                raise
            warnings.warn(f"omnizoo: source {s!r} skipped: {exc}", stacklevel=3)
        except Exception as exc:  # a broken adapter must not take the others down
            if strict:
                raise
            warnings.warn(
                f"omnizoo: source {s!r} skipped ({type(exc).__name__}: {exc})", stacklevel=3
            )
    return out


def _pick_tag(idx: SourceIndex, arch: str, tag: str | None) -> tuple[str | None, bool, str]:
    """(tag to use, found?, reason)."""
    tags, default, _task = idx.archs[arch]
    if tag is None or tag.upper() == "DEFAULT":
        if default is None:
            return None, True, f"knows {arch!r} (an architecture without pretrained weights)"
        return default, True, f"knows {arch!r}; its default weights are {default!r}"
    if tag in tags:
        return tag, True, f"has {arch!r} with weights {tag!r}"
    folded = [t for t in tags if t.lower() == tag.lower()]
    if len(folded) == 1:
        return folded[0], True, f"has {arch!r} with weights {folded[0]!r} (case-insensitive)"
    avail = ", ".join(tags) if tags else "none"
    return None, False, f"knows {arch!r} but not weights {tag!r} (has: {avail})"


def resolve(name: str) -> Resolution:
    """Resolve ``name`` to one card; see the module docstring for the rules."""
    order = tuple(list_sources())
    from ..saved.folder import local_folder

    folder = local_folder(name)
    if folder is not None:  # a folder written by save_pretrained
        from ..saved.folder import read_saved

        card = read_saved(folder).card
        why = f"{folder} is a model saved by omnizoo.save_pretrained (its card.json)"
        return Resolution(
            name, card, (Candidate("local", card.arch, card.tag, True, why, card.name),), why, order
        )
    parsed = parse_name(name)
    if parsed.scheme is not None and parsed.source is not None:
        from .adapters import get_adapter

        _require_installed(name, [_load_index(parsed.source)])
        card = get_adapter(parsed.source).external_card(parsed.scheme, parsed.body)
        why = f"{parsed.scheme}: names are read by the {parsed.source} source (its config.json)"
        return Resolution(
            name,
            card,
            (Candidate(parsed.source, card.arch, None, True, why, card.name),),
            why,
            order,
        )
    from .resolved import lookup, remember

    known = lookup(name, parsed.source, order)  # this name, resolved by an earlier process
    if known is not None:
        card, rows, why = known
        return Resolution(name, card, tuple(Candidate(*row) for row in rows), why, order)
    indexes = source_indexes(parsed.source)
    if parsed.source is not None:
        _require_installed(name, indexes)
    candidates: list[Candidate] = []
    winner: ModelCard | None = None
    reason = ""
    for idx in indexes:
        found = None
        for arch, tag in split_body(parsed.body):
            real = idx.find_arch(arch)
            if real is not None:
                found = (real, tag)
                break
        if found is None:
            continue
        arch, tag = found
        use_tag, ok, why = _pick_tag(idx, arch, tag)
        card_name = format_name(idx.source, arch, use_tag) if ok else None
        candidates.append(Candidate(idx.source, arch, tag, ok, why, card_name))
        if ok and winner is None and card_name is not None:
            winner = idx.card(card_name)
            if parsed.source:
                reason = f"the name gives the source {idx.source!r}"
            else:
                earlier = [c.source for c in candidates[:-1]]
                reason = f"{idx.source!r} is the first source in the order that " + (
                    "has it" if not earlier else f"has it ({', '.join(earlier)} did not)"
                )
                reason += "; order: " + " > ".join(order)
    if winner is None:
        if candidates:
            lines = "; ".join(f"{c.source}: {c.reason}" for c in candidates)
            raise NoPretrainedWeightsError(f"{name!r}: no such weights ({lines})")
        _raise_unlisted(name, parsed.source, indexes)
        error = UnknownModelError(name, _suggest(parsed.body, indexes))
        absent = [idx.source for idx in indexes if idx.missing]
        if absent:  # the name may belong to a source whose library is not installed
            hints = "; ".join(f"{s}: {_install_hint(s)}" for s in absent)
            error = UnknownModelError(
                name, error.suggestions, f"{error}; not installed: {', '.join(absent)} ({hints})"
            )
        raise error
    rows = [(c.source, c.arch, c.tag, c.matched, c.reason, c.card_name) for c in candidates]
    remember(name, parsed.source, order, winner, rows, reason)
    return Resolution(name, winner, tuple(candidates), reason, order)


def _install_hint(source: str) -> str:
    from .adapters import get_adapter

    return get_adapter(source).install_hint()


def _require_installed(name: str, indexes: list[SourceIndex]) -> None:
    """A name of a source whose library is missing: say exactly what to install."""
    for idx in indexes:
        if idx.missing:
            raise DependencyError(
                f"{name!r} is a model of the {idx.source} source, which needs "
                f"{', '.join(idx.missing)} (not installed): {_install_hint(idx.source)}"
            )


def _raise_unlisted(name: str, source: str | None, indexes: list[SourceIndex]) -> None:
    """A name no source knows while a source lists nothing for a reason (the ONNX zoo without
    its manifest): a name of that source raises that reason; a name without a source is
    still unknown, and its message gives the reason too."""
    from .adapters import get_adapter

    reasons = []
    for idx in indexes:
        if idx.archs or idx.missing:  # a missing library: see _require_installed
            continue
        problem = get_adapter(idx.source).listing_problem()
        if problem is None:
            continue
        if source == idx.source:
            raise type(problem)(f"{name!r}: the {idx.source} source lists no models: {problem}")
        reasons.append(f"the {idx.source} source lists no models: {problem}")
    if reasons:
        suggestions = _suggest(parse_name(name).body, indexes)
        message = f"unknown model {name!r}"
        if suggestions:
            message += "; did you mean " + ", ".join(repr(s) for s in suggestions) + "?"
        raise UnknownModelError(name, suggestions, message=message + "; " + "; ".join(reasons))


def _suggest(body: str, indexes: list[SourceIndex], n: int = 5) -> list[str]:
    pool: dict[str, str] = {}
    for idx in indexes:
        for arch in idx.archs:
            pool.setdefault(arch.lower(), format_name(idx.source, arch))
        for full in idx.raw:
            pool.setdefault(full.split(":", 1)[1].lower(), full)
    import difflib

    close = difflib.get_close_matches(body.lower(), list(pool), n=n, cutoff=0.6)
    seen: list[str] = []
    for c in close:
        if pool[c] not in seen:
            seen.append(pool[c])
    return seen


def explain(name: str) -> Resolution:
    """Every candidate source for ``name``, the winner and why (see :class:`Resolution`).

    >>> explain("resnet50").reason                                    # doctest: +SKIP
    'first in the resolution order (torchvision, timm, ...)'

    Raises:
        UnknownModelError: no source has this name (with close matches); UnknownSourceError:
            an unknown ``source:`` prefix.
        InvalidNameError: the name does not follow ``[source:]arch[.tag]``.
    """
    return resolve(name)
