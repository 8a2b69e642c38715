"""Building a source's card index: the cards its library declares, as the content of an index
file (:func:`build_payload`, saved by :mod:`omnizoo.registry.index` and shipped by
``scripts/build_prebuilt.py``).

The parameters and GFLOPs no source publishes are not counted here (that took minutes for
timm): they come from the shipped prebuilt indexes where those counted the same build
(:func:`reuse_shipped`), and the rest are listed as ``pending``, to be counted when asked
(:mod:`omnizoo.registry.figures`). ``count=True`` counts them all now (the prebuilt indexes
themselves).
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..sources.param_flops import COUNTED, needs_count, stats_key
from ..values.card import ModelCard
from .source_index import compact, entry

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = ["build_payload", "reuse_shipped", "rng_untouched", "shipped_figures"]


def build_payload(
    adapter: SourceAdapter, *, stream: Any = None, key: str | None = None, count: bool = False
) -> dict[str, Any]:
    """Build ``adapter``'s cards and return the index file's content (what ``load_index``
    saves and ``scripts/build_prebuilt.py`` ships), under ``key`` (default: the adapter's key
    before the build; building may change it, e.g. by fetching the ONNX manifest).

    Figures no source publishes: ``count`` counts them now (progress to ``stream``), else they
    are reused from the shipped indexes or listed under ``"pending"``. Torch's, numpy's and
    Python's global random states are left as they were."""
    key = adapter.index_key() if key is None else key
    pending: list[str] = []
    # counting builds models (cycles to collect); reading cards allocates only plain data
    with rng_untouched(), contextlib.nullcontext() if count else _no_gc():
        built = adapter.build_cards()
        if count:
            from ..sources.param_flops import fill_stats

            built = fill_stats(adapter, built, stream=stream)
        else:
            built, pending = reuse_shipped(adapter, key, built)
        cards = [compact(c.to_dict()) for c in built]
        payload = {
            "key": key,
            "source": adapter.name,
            "entries": [entry(c) for c in cards],
            "cards": [json.dumps(c, separators=(",", ":"), sort_keys=True) for c in cards],
        }
    if pending:
        payload["pending"] = pending
    return payload


#: A shipped figure: (parameters, GFLOPs) and the provenance of each (None: absent).
Shipped = tuple[int | None, float | None, str | None, str | None]


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
                figure = (params[0], gflops[0], params[1], gflops[1])
                out.setdefault(stats_key(card), (key, figure))
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


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused: reading cards allocates some 100,000 small
    objects right after torch and the source library made 400,000, and each full collection
    that triggers walks all of them (it tripled the time of turning timm's 2,052 cards into
    JSON); the cards hold no cycles worth collecting early."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Building cards constructs models (torchvision's ViT builders draw their class token from
    torch's global generator even on the meta device), which must not change what a user's
    ``torch.manual_seed(0); create_model(...)`` gives on a cold home: the global random states
    of torch, numpy and ``random`` are put back afterwards."""
    import random

    import numpy as np
    import torch  # building imports it anyway; its state must be saved before the build

    py_state = random.getstate()
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        torch.random.set_rng_state(torch_state)
        np.random.set_state(np_state)
