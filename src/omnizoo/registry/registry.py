"""What exists: ``list_models``, ``list_sources``, ``get_card`` and ``explain``.

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

import difflib
import fnmatch
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ConfigurationError,
    DependencyError,
    NoPretrainedWeightsError,
    OmnizooError,
    UnknownModelError,
    UnknownSourceError,
)
from ..settings import get_settings
from ..sources.table import adapter_path, resolution_order
from ..values.card import ModelCard, Task
from ..values.names import format_name, parse_name, split_body
from .index import load_index
from .source_index import COUNTED_METRICS, SourceIndex

__all__ = [
    "SORT_KEYS",
    "Candidate",
    "Resolution",
    "explain",
    "get_card",
    "list_models",
    "list_sources",
    "resolve",
]


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


def _indexes(source: str | None, *, strict: bool = False) -> list[SourceIndex]:
    if source is not None:
        if adapter_path(source) is None:
            raise UnknownSourceError(
                source,
                message=f"unknown source {source!r}; sources: {', '.join(list_sources())}",
            )
        return [load_index(source)]
    out = []
    for s in list_sources():
        try:
            out.append(load_index(s))
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


def _patterns(pattern: str | Sequence[str] | None) -> list[str]:
    if pattern is None:
        return ["*"]
    if isinstance(pattern, str):
        return [pattern or "*"]
    return [p for p in pattern] or ["*"]


def _match(name: str, patterns: Iterable[str]) -> bool:
    low = name.lower()
    short = low.split(":", 1)[1]
    for p in patterns:
        p = p.lower()
        if fnmatch.fnmatchcase(low, p) or (":" not in p and fnmatch.fnmatchcase(short, p)):
            return True
    return False


#: sort keys of :func:`list_models`, and whether larger is better (listed first)
SORT_KEYS: dict[str, bool] = {
    "name": False,
    "top1": True,
    "top5": True,
    "params": False,
    "gflops": False,
}


def _sort_spec(sort: str) -> tuple[str, bool]:
    """(metric, descending) of a ``sort`` argument: a key of :data:`SORT_KEYS`, optionally
    prefixed with ``-`` (reverse its natural order) or ``+``."""
    key = sort.strip().lower()
    flip = key.startswith("-")
    key = key.lstrip("+-")
    if key not in SORT_KEYS:
        raise ConfigurationError(
            f"sort={sort!r}: sort by one of {', '.join(SORT_KEYS)} (a leading '-' reverses)"
        )
    return key, SORT_KEYS[key] != flip


def list_models(
    pattern: str | Sequence[str] = "*",
    *,
    source: str | None = None,
    task: Task | None = None,
    pretrained: bool = False,
    exclude: str | Sequence[str] = (),
    sort: str | None = None,
    min_top1: float | None = None,
    max_params: float | None = None,
    max_gflops: float | None = None,
) -> list[str]:
    """Fully qualified model names matching ``pattern`` (fnmatch, case-insensitive).

    One ``source:arch`` per architecture, or with ``pretrained=True`` one ``source:arch.tag``
    per set of weights. A pattern matches with or without the ``source:`` prefix. ``task``
    filters on the card's task ("classification", "detection", ...); ``exclude`` removes
    names matching any of its patterns. Sorted by source (resolution order), then name.

    Metrics (an architecture's are those of its default weights; read from the index, no card
    is decoded): ``min_top1`` keeps names whose ImageNet top-1 is at least that (percent),
    ``max_params`` those with at most that many **millions** of parameters, ``max_gflops``
    those with at most that many GFLOPs (billions of multiply-adds); a name without the metric
    is left out. ``sort`` orders across sources by ``"top1"``/``"top5"`` (best first),
    ``"params"``/``"gflops"`` (smallest first) or ``"name"``; ``"-params"`` reverses; names
    without the metric come last.

    >>> list_models("resnet50.*", source="torchvision", pretrained=True, sort="top1")
    ['torchvision:resnet50.IMAGENET1K_V2', 'torchvision:resnet50.IMAGENET1K_V1']
    >>> list_models("resnet50.*", source="torchvision", pretrained=True, min_top1=80)
    ['torchvision:resnet50.IMAGENET1K_V2']

    Raises:
        UnknownSourceError: ``source`` is not one of :func:`list_sources`.
        ConfigurationError: an unknown ``sort`` key.
        DependencyError: a source's library is needed to build its card index and is not
            installed (only with ``source`` naming it; other sources are skipped).
    """
    pats = _patterns(pattern)
    excl = [exclude] if isinstance(exclude, str) else list(exclude)
    spec = _sort_spec(sort) if sort else None
    limits = [
        (k, v, ge)
        for k, v, ge in (
            ("top1", min_top1, True),
            ("params", max_params, False),
            ("gflops", max_gflops, False),
        )
        if v is not None
    ]
    out: list[str] = []
    keyed: list[tuple[str, float | None]] = []
    for idx in _indexes(source):
        names: list[tuple[str, str]] = []  # (listed name, card name holding its metrics)
        if pretrained:
            names = [(n, n) for n, t in idx.weighted.items() if task is None or t == task]
        else:
            for arch, (_tags, _default, arch_task) in idx.archs.items():
                if task is not None and arch_task != task:
                    continue
                names.append((format_name(idx.source, arch), idx.default_name(arch)))
        names = [(n, c) for n, c in names if _match(n, pats) and not (excl and _match(n, excl))]
        for key, limit, at_least in limits:
            if key in COUNTED_METRICS:  # counted once, in one batch, where still pending
                idx.fill(c for _, c in names)
            names = [
                (n, c)
                for n, c in names
                if (v := idx.metric(c, key)) is not None
                and (v >= limit if at_least else v <= limit)
            ]
        if spec is None:
            out.extend(sorted(n for n, _ in names))
        else:
            if spec[0] in COUNTED_METRICS:
                idx.fill(c for _, c in names)
            keyed.extend(
                (n, None if spec[0] == "name" else idx.metric(c, spec[0])) for n, c in names
            )
    if spec is not None:
        key, descending = spec
        if key == "name":
            keyed.sort(key=lambda item: item[0].split(":", 1)[1].lower(), reverse=descending)
        else:
            keyed.sort(key=lambda item: item[0])
            keyed.sort(
                key=lambda item: (item[1] is None, -(item[1] or 0) if descending else item[1] or 0)
            )
        out = [n for n, _ in keyed]
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

        _require_installed(name, [load_index(parsed.source)])
        card = get_adapter(parsed.source).external_card(parsed.scheme, parsed.body)
        why = f"{parsed.scheme}: names are read by the {parsed.source} source (its config.json)"
        return Resolution(
            name,
            card,
            (Candidate(parsed.source, card.arch, None, True, why, card.name),),
            why,
            order,
        )
    indexes = _indexes(parsed.source)
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


def get_card(name_or_model: Any) -> ModelCard:
    """The :class:`ModelCard` for a name, a model made by ``create_model`` or a card.

    Metadata only: builds nothing and downloads nothing.

    >>> get_card("torchvision:resnet18").num_classes
    1000

    Raises:
        UnknownModelError: no model has this name, or the object carries no omnizoo card;
            UnknownSourceError: an unknown ``source:`` prefix.
        InvalidNameError: the name does not follow ``[source:]arch[.tag]``.
        ConfigurationError, MetadataError: a saved folder without a card, or whose card
            fails the schema (see :func:`omnizoo.read_card`).
    """
    if isinstance(name_or_model, ModelCard):
        return name_or_model
    if isinstance(name_or_model, os.PathLike):  # a folder written by save_pretrained
        from ..saved.folder import read_card

        return read_card(name_or_model)
    if isinstance(name_or_model, str):
        return resolve(name_or_model).card
    card = getattr(name_or_model, "omnizoo_card", None)
    if isinstance(card, ModelCard):
        from .derive import current_card

        return current_card(name_or_model, card)  # a head replaced by hand is noticed
    raise UnknownModelError(
        repr(type(name_or_model).__name__),
        message=f"{type(name_or_model).__name__} object carries no omnizoo card; pass a model "
        "name or a model made by omnizoo.create_model",
    )
