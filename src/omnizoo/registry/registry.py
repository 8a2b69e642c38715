"""What exists: ``list_models`` and ``get_card``, read from the per-source card indexes
(:mod:`omnizoo.registry.index`); after the first use neither imports torch, timm or
torchvision. How a name becomes a card (the sources, in order, and why one wins) is
:mod:`omnizoo.registry.resolution`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import (
    ConfigurationError,
    UnknownModelError,
)
from ..values.card import ModelCard, Task
from ..values.names import format_name
from .listing import card_row
from .resolution import resolve, source_indexes
from .source_index import COUNTED_METRICS

__all__ = ["LISTING_COLUMNS", "SORT_KEYS", "ModelList", "get_card", "list_models"]


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


#: The columns a listing shows in Jupyter (:meth:`ModelList._repr_html_`).
LISTING_COLUMNS = ("name", "task", "top1", "params", "gflops", "size", "license")


class ModelList(list[str]):
    """What :func:`omnizoo.list_models` returns: a plain ``list`` of names that also shows
    itself in IPython and Jupyter (its first rows with their figures) and keeps a short
    one-line repr when it is long.

    >>> ModelList(["timm:resnet18", "timm:resnet34"])
    ['timm:resnet18', 'timm:resnet34']
    >>> ModelList(f"timm:net{i}" for i in range(1000))
    ModelList(1000 names: 'timm:net0', 'timm:net1', ..., 'timm:net999')

    Raises:
        Nothing: a list of names.
    """

    def __repr__(self) -> str:
        from ..values.display import MAX_REPR, clip

        full = list.__repr__(self)
        if len(full) <= MAX_REPR:  # what print(list_models(...)) always showed
            return full
        shown = [repr(clip(n, 45)) for n in (*self[:2], self[-1])]
        return f"ModelList({len(self)} names: {shown[0]}, {shown[1]}, ..., {shown[2]})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from ..values.display import pretty_lines

        pretty_lines(p, cycle, f"ModelList ({len(self)} names)", [str(n) for n in self])

    def _repr_html_(self) -> str:
        """The first rows as a table of each model's figures (the cards, from the index)."""
        from ..values.display import MAX_ROWS, html_grid

        rows = []
        for name in self[:MAX_ROWS]:
            row = card_row(get_card(name), LISTING_COLUMNS)
            row["name"] = name  # an architecture's row shows the architecture
            rows.append([row[c] for c in LISTING_COLUMNS])
        rows += [[] for _ in self[MAX_ROWS:]]  # counted in the "... more" line
        return html_grid(LISTING_COLUMNS, rows, title=f"{len(self)} models")


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

    The list is a :class:`~omnizoo.registry.registry.ModelList`: a plain list of names that
    shows a table of their figures in Jupyter.

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
    for idx in source_indexes(source):
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
    return ModelList(out)  # a list; it also shows its figures in Jupyter


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
