"""The on-disk card index: one JSON file per (source, library version, card schema).

Building cards imports the source library (timm, torchvision, ...) and counts nothing: the
parameters and GFLOPs no source publishes come from the shipped indexes or are counted when
asked, into a figure cache beside the index (:mod:`.figures`); this cache makes every later
``list_models()`` / ``get_card()`` a JSON read. The file name is the adapter's
:meth:`~omnizoo.sources.base.SourceAdapter.index_key`, so upgrading a library (or bumping
``INDEX_SCHEMA``) builds a fresh index. Writes are atomic (temp file + rename), so concurrent
processes never see half a file.

Where to find an index, in order: this process's memory, ``$OMNIZOO_HOME/index/<key>.json``,
the prebuilt index shipped in the package for the pinned library versions
(``omnizoo/data/prebuilt/<key>.json.gz``, made by ``scripts/build_prebuilt.py`` and tested to
equal a fresh build; copied into the home), else a build, announced on stderr, and saved.

Beside it: :mod:`.source_index` (an index in memory, its rows and compact cards),
:mod:`.index_build` (an index file's content, built from the source library) and
:mod:`.adapters` (the source adapters the indexes are keyed and built by).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import get_settings
from .adapters import get_adapter, is_own_adapter, reset_adapters
from .figures import FigureCache
from .index_build import build_payload
from .source_index import METRIC_FIELDS, LazyCards, SourceIndex, compact

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = [
    "fill_figures",
    "load_index",
    "prebuilt_path",
    "reset_indexes",
    "stale_index_files",
]

_lock = threading.RLock()
_indexes: dict[tuple[str, str, bool], SourceIndex] = {}


def _safe(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in key)


def _index_path(source: str, key: str) -> Path:
    return get_settings().index_dir / f"{_safe(key)}.json"


def _figures_path(key: str) -> Path:
    """The figure cache of an index key (:class:`~omnizoo.registry.figures.FigureCache`)."""
    return get_settings().index_dir / f"{_safe(key)}.figures.json"


def _write_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Temp file + rename, created with the process umask (``tempfile.mkstemp`` would make
    it 0600, unreadable to the rest of a team sharing the cache)."""
    from ..weights.fsafe import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def prebuilt_path(key: str) -> Path:
    """Where the package keeps the prebuilt index of ``key`` (it may not exist)."""
    from ..sources.package_data import PREBUILT_DIR

    return PREBUILT_DIR / f"{_safe(key)}.json.gz"


def _read_prebuilt(source: str, key: str, path: Path) -> SourceIndex | None:
    """The shipped index of ``key``, copied to ``path`` (the home's index file) so that later
    processes read it as any other saved index (a home that cannot be written keeps it in
    memory only)."""
    shipped = prebuilt_path(key)
    if not shipped.is_file():
        return None
    import gzip

    try:
        raw = gzip.decompress(shipped.read_bytes())
        data = json.loads(raw)
    except (OSError, ValueError, EOFError):
        warnings.warn(f"omnizoo: the prebuilt card index {shipped} is unreadable", stacklevel=3)
        return None
    idx = _from_payload(data, source, key)
    if idx is None:
        return None
    from ..weights.fsafe import write_atomic

    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, raw)  # the same bytes _write_atomic would write
        _saved_in(idx, path)
    return idx


def load_index(source: str, *, rebuild: bool = False) -> SourceIndex:
    """The card index of ``source``: from memory, else from disk, else the package's prebuilt
    index, else built (announced on stderr) and saved; plus the source's session cards
    (models registered in this process). ``rebuild``: build it (and save it) whatever memory,
    disk and the package hold. A source whose library is missing has an empty index."""
    adapter = get_adapter(source)
    missing = adapter.missing()
    if missing:  # the library is not installed: no models (their names say what to install)
        return SourceIndex(source, "missing", LazyCards({}), missing=missing)
    return _base_index(source, adapter, rebuild).with_session_cards(adapter.session_cards())


def _base_index(source: str, adapter: SourceAdapter, rebuild: bool) -> SourceIndex:
    """The index of the cards the source library declares (memory, disk, or built)."""
    settings = get_settings()
    key = adapter.index_key()
    cache_key = (source, str(settings.index_dir), settings.card_cache)
    on_disk = settings.card_cache and adapter.persistent
    with _lock:
        idx = _indexes.get(cache_key)
        if idx is not None and idx.key == key and not rebuild:
            return idx
        path = _index_path(source, key)
        idx = None
        if on_disk and not rebuild:
            idx = _read_index(path, source, key)
            if idx is None and is_own_adapter(source, adapter):
                idx = _read_prebuilt(source, key, path)
        if idx is None and adapter.persistent:
            idx = _build(adapter, source, key, path, on_disk)
        elif idx is None:  # an in-memory source: cheap, builds no model, nothing to count
            cards = [compact(c.to_dict()) for c in adapter.build_cards()]
            idx = SourceIndex.from_cards(source, key, cards)
        if idx.pending and adapter.countable:
            idx.figures = FigureCache(adapter, key, _figures_path(key) if on_disk else None)
        _indexes[cache_key] = idx
        return idx


def _build(adapter: SourceAdapter, source: str, key: str, path: Path, save: bool) -> SourceIndex:
    started = time.monotonic()
    sys.stderr.write(
        f"omnizoo: building the {source} card index ({key}): reading what the installed "
        f"library declares, once per library version\n"
    )
    sys.stderr.flush()
    data = build_payload(adapter, key=key)
    if save:
        try:
            _write_atomic(path, data)
        except OSError as exc:
            warnings.warn(f"omnizoo: cannot write card index {path}: {exc}", stacklevel=3)
    sys.stderr.write(
        f"omnizoo: {source} card index built in {time.monotonic() - started:.1f} s "
        f"({len(data['cards'])} cards)" + (f", saved to {path}" if save else "") + "\n"
    )
    sys.stderr.flush()
    idx = _from_payload(data, source, key)
    assert idx is not None
    return idx


def _rebuild_index(source: str, damaged: Path | None) -> SourceIndex:
    """Build ``source``'s index afresh (ignoring the damaged file, which is replaced)."""
    with _lock:
        if damaged is not None:
            with contextlib.suppress(OSError):
                damaged.unlink()
        return _base_index(source, get_adapter(source), True)


def _from_payload(data: Any, source: str, key: str) -> SourceIndex | None:
    """The index of a parsed index file; None when it is stale or malformed."""
    try:
        entries, cards = data.get("entries"), data.get("cards")
        if data.get("key") != key or not isinstance(cards, list) or not isinstance(entries, list):
            return None
        if not all(isinstance(c, str) for c in cards):
            return None
        if not all(
            isinstance(e, (list, tuple)) and len(e) == len(METRIC_FIELDS) + 5 for e in entries
        ):
            return None
        idx = SourceIndex.from_entries(source, key, [tuple(e) for e in entries], cards)
        pending = data.get("pending", [])
        if not isinstance(pending, list) or not all(isinstance(n, str) for n in pending):
            return None
        idx.pending = {n for n in pending if n in idx.raw}
        return idx
    except (ValueError, AttributeError, TypeError):
        return None


_MAX_INDEX_BYTES = 1 << 30  # timm's index is a few MB; a planted /dev/zero link is not


def _read_index(path: Path, source: str, key: str) -> SourceIndex | None:
    """The index in ``path``; None when it is missing, stale or corrupt (then it is rebuilt)."""
    if not path.is_file():
        return None
    from ..weights import fsafe

    try:  # inside OMNIZOO_HOME: no symlink followed, a FIFO never blocks, size-capped
        data = json.loads(fsafe.read_regular(path, _MAX_INDEX_BYTES))
    except (OSError, ValueError):
        return None  # corrupt, unreadable or planted: rebuild
    idx = _from_payload(data, source, key)
    if idx is not None:
        _saved_in(idx, path)
    return idx


def _saved_in(idx: SourceIndex, path: Path) -> None:
    """Mark ``idx`` as read from ``path``: a damaged card there rebuilds it (and the file)."""
    idx.path, idx.rebuild = path, _rebuild_index


def stale_index_files() -> list[Path]:
    """Card index files no installed source uses any more (an older library version or card
    schema). A source whose adapter cannot say its current key keeps all of its files."""
    directory = get_settings().index_dir
    if not directory.is_dir():
        return []
    current: set[str] = set()
    judged: list[str] = []
    from ..sources.table import source_names

    for source in source_names():
        try:
            key = get_adapter(source).index_key()
            current.update((_index_path(source, key).name, _figures_path(key).name))
        except Exception:  # an adapter that fails here: leave its files alone
            continue
        judged.append(source)
    return sorted(
        path
        for path in directory.glob("*.json")
        if path.name not in current and any(path.name.startswith(f"{s}-") for s in judged)
    )


def fill_figures(names: list[str]) -> None:
    """Get the pending parameters and GFLOPs of the cards behind ``names`` (fully qualified,
    as ``list_models`` gives them: an architecture stands for its default card) in one batch
    per source, before they are shown one by one."""
    by_source: dict[str, list[str]] = {}
    for name in names:
        source, sep, body = name.partition(":")
        if sep:
            by_source.setdefault(source, []).append(body)
    for source, bodies in by_source.items():
        try:
            idx = load_index(source)
        except Exception:  # an unknown or broken source: its cards say so when shown
            continue
        if not idx.pending:
            continue
        cards = []
        for body in bodies:
            name = f"{source}:{body}"
            if name in idx.raw:
                cards.append(name)
            elif body in idx.archs:
                cards.append(idx.default_name(body))
        idx.fill(cards)


def reset_indexes() -> None:
    """Forget the in-memory indexes and adapters (tests; after changing OMNIZOO_HOME)."""
    with _lock:
        _indexes.clear()
        reset_adapters()
