"""Resolved names, remembered across processes: the first ``get_card``/``create_model`` of a
name in a fresh process costs a file of a few KB instead of the source's whole card index
(timm's is ~3 MB of JSON: 20-90 ms to read and parse, most of a small model's build).

One file per name, ``$OMNIZOO_HOME/index/resolved/<hash of the name>.json``, holding the
resolution (card, candidates, reason: :func:`~omnizoo.registry.resolution.resolve` makes
the :class:`~omnizoo.registry.resolution.Resolution` of them) and what it was
decided from: the resolution order and the index key of every source consulted up to the
winner (:meth:`~omnizoo.sources.base.SourceAdapter.index_key`: library version, torch's,
card schema). A card index is a pure function of its key, so while the order and those keys
are the same, so is the answer; anything else (another version, another order, a source
whose library went missing or that has cards registered in this process, a damaged or
planted file) is a miss, and the name is resolved from the indexes as before. Nothing is
remembered for saved folders, ``hf-hub:`` names, errors, or when ``OMNIZOO_CARD_CACHE=0``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from ..settings import get_settings
from ..values.card import ModelCard

__all__ = ["lookup", "remember"]

_VERSION = 1
_MAX_BYTES = 1 << 20  # a card is a few KB; anything larger is not ours


def _path(name: str) -> Path:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return get_settings().index_dir / "resolved" / f"{digest}.json"


def _consulted(source: str | None, order: Sequence[str], winner: str) -> list[str] | None:
    """The sources whose indexes decided the answer: the named one, or every source of the
    order up to the winner (an earlier one that learns the name would win)."""
    if source is not None:
        return [source] if source == winner else None
    if winner not in order:
        return None
    return list(order[: order.index(winner) + 1])


def _keys(sources: object) -> list[str] | None:
    """The current index key of each source, or None when one's index is not a pure function
    of its key (cards registered in this process, a missing library, an in-memory source)."""
    from .adapters import get_adapter

    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        return None
    keys = []
    for source in sources:
        adapter = get_adapter(source)
        if not adapter.persistent or adapter.missing() or adapter.session_cards():
            return None
        keys.append(adapter.index_key())
    return keys


#: one candidate source of a resolution: (source, arch, tag, matched, reason, card name), the
#: fields of :class:`~omnizoo.registry.resolution.Candidate`
Row = tuple[str, str, str | None, bool, str, str | None]


def lookup(
    name: str, source: str | None, order: Sequence[str]
) -> tuple[ModelCard, list[Row], str] | None:
    """The remembered resolution of ``name`` (``source``: the one its prefix names) as (card,
    candidates, reason), or None (a miss: resolve it from the indexes)."""
    settings = get_settings()
    if not settings.card_cache:
        return None
    path = _path(name)
    try:
        from ..weights import fsafe

        # read as the card index is: in the home, no link followed, size-capped, every field
        # checked below; anything unexpected is a miss
        data = json.loads(fsafe.read_regular(path, _MAX_BYTES))
        if not isinstance(data, dict) or data.get("v") != _VERSION or data.get("name") != name:
            return None
        sources, keys, reason = data.get("sources"), data.get("keys"), data.get("reason")
        if data.get("order") != list(order) or not isinstance(reason, str):
            return None
        card = ModelCard.from_dict(data["card"])
        if _consulted(source, order, card.source) != sources or _keys(sources) != keys:
            return None
        return card, _rows(data.get("candidates")), reason
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing, stale, damaged or planted


def _rows(rows: object) -> list[Row]:
    if not isinstance(rows, list) or len(rows) > 1000:
        raise ValueError("expected a list of candidates")
    out: list[Row] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 6:
            raise ValueError("a malformed candidate")
        src, arch, tag, matched, reason, card_name = row
        if not (
            isinstance(src, str)
            and isinstance(arch, str)
            and (tag is None or isinstance(tag, str))
            and isinstance(matched, bool)
            and isinstance(reason, str)
            and (card_name is None or isinstance(card_name, str))
        ):
            raise ValueError("a malformed candidate")
        out.append((src, arch, tag, matched, reason, card_name))
    return out


def remember(
    name: str,
    source: str | None,
    order: Sequence[str],
    card: ModelCard,
    candidates: Sequence[Row],
    reason: str,
) -> None:
    """Keep the resolution of ``name`` for later processes (best effort: a home that cannot
    be written just keeps resolving from the indexes)."""
    settings = get_settings()
    if not settings.card_cache:
        return
    sources = _consulted(source, order, card.source)
    if sources is None:
        return
    try:
        keys = _keys(sources)
        if keys is None:
            return
        payload = {
            "v": _VERSION,
            "name": name,
            "order": list(order),
            "sources": sources,
            "keys": keys,
            "card": card.to_dict(),
            "candidates": [list(row) for row in candidates],
            "reason": reason,
        }
        from ..weights.fsafe import write_atomic

        path = _path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    except (OSError, ValueError, TypeError):
        return
