"""The on-disk card index: one JSON file per (source, library version, card schema).

Building cards imports the source library (timm, torchvision, ...) and counts the parameters
and GFLOPs no source publishes (:func:`omnizoo.sources.counting.fill_stats`); this cache makes
every later ``list_models()`` / ``get_card()`` a JSON read. The file name is the adapter's
:meth:`~omnizoo.sources.base.SourceAdapter.index_key`, so upgrading a library (or bumping
``INDEX_SCHEMA``) builds a fresh index. Writes are atomic (temp file + rename), so concurrent
processes never see half a file.

Where to find an index, in order: this process's memory, ``$OMNIZOO_HOME/index/<key>.json``,
the prebuilt index shipped in the package for the pinned library versions
(``omnizoo/data/prebuilt/<key>.json.gz``, made by ``scripts/build_prebuilt.py`` and tested to
equal a fresh build; copied into the home), else a build, announced on stderr, and saved.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DependencyError, UnknownSourceError
from ..settings import get_settings
from .card import ModelCard

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = [
    "SourceIndex",
    "build_payload",
    "get_adapter",
    "load_index",
    "prebuilt_path",
    "reset_indexes",
    "stale_index_files",
]

_lock = threading.RLock()
_adapters: dict[str, SourceAdapter] = {}
_indexes: dict[tuple[str, str, bool], SourceIndex] = {}


def get_adapter(source: str) -> SourceAdapter:
    """The adapter instance of ``source`` (imports only omnizoo's module, not the library)."""
    from ..sources.base import SourceAdapter
    from ..sources.table import adapter_path, source_names

    with _lock:
        if source in _adapters:
            return _adapters[source]
        path = adapter_path(source)
        if path is None:
            raise UnknownSourceError(
                source,
                message=f"unknown source {source!r}; sources: {', '.join(source_names())}",
            )
        module_name, _, class_name = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise DependencyError(f"source {source!r} is not available ({exc})") from exc
        if not (isinstance(cls, type) and issubclass(cls, SourceAdapter)):
            raise DependencyError(f"source {source!r}: {path} is not a SourceAdapter")
        adapter = cls()
        _adapters[source] = adapter
        return adapter


class _LazyCards(Mapping[str, dict[str, Any]]):
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
_Entry = tuple[Any, ...]
#: metric name -> position in an entry row
METRIC_FIELDS = {"top1": 5, "top5": 6, "params": 7, "gflops": 8}


def _entry(card: Mapping[str, Any]) -> _Entry:
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
    # the on-disk file it was read from (None: built in this process); a damaged card in it
    # makes the index rebuild itself (:meth:`card`)
    path: Path | None = field(default=None, repr=False)

    @classmethod
    def from_cards(cls, source: str, key: str, cards: list[dict[str, Any]]) -> SourceIndex:
        return cls.from_entries(source, key, [_entry(c) for c in cards], list(cards))

    @classmethod
    def from_entries(
        cls,
        source: str,
        key: str,
        entries: list[_Entry],
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
        idx = cls(source, key, _LazyCards(items), archs, weighted, metrics)
        idx._lower = {a.lower(): a for a in archs}
        return idx

    def card(self, name: str) -> ModelCard:
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
                if self.path is None:
                    raise
                self._heal(exc)
                return self.card(name)
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
        fresh = _rebuild_index(self.source, path)
        self.raw, self.archs, self.weighted = fresh.raw, fresh.archs, fresh.weighted
        self.metrics = fresh.metrics
        self._lower, self._cards = fresh._lower, {}

    def default_name(self, arch: str) -> str:
        """The card an architecture resolves to (its default weights, or the bare card)."""
        _tags, default, _task = self.archs[arch]
        return f"{self.source}:{arch}" + (f".{default}" if default else "")

    def metric(self, name: str, key: str) -> float | None:
        """``top1``/``top5``/``params`` (millions)/``gflops`` of a card, from the index row."""
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
        for name in self.raw:
            yield self.card(name)


def _safe(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in key)


def _index_path(source: str, key: str) -> Path:
    return get_settings().index_dir / f"{_safe(key)}.json"


def _write_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Temp file + rename, created with the process umask (``tempfile.mkstemp`` would make
    it 0600, unreadable to the rest of a team sharing the cache)."""
    from ..weights.fsafe import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, separators=(",", ":")).encode("utf-8"))


_DEFAULTS: dict[str, Any] = {}


def _compact(card: dict[str, Any]) -> dict[str, Any]:
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


def build_payload(
    adapter: SourceAdapter, *, stream: Any = None, key: str | None = None
) -> dict[str, Any]:
    """Build ``adapter``'s cards, count what no source publishes, and return the index file's
    content (what ``load_index`` saves and ``scripts/build_prebuilt.py`` ships), under ``key``
    (default: the adapter's key before the build; building may change it, e.g. by fetching
    the ONNX manifest). Torch's, numpy's and Python's global random states are left as they
    were."""
    from ..sources.counting import fill_stats

    key = adapter.index_key() if key is None else key
    with _rng_untouched():
        built = adapter.build_cards()
        built = fill_stats(adapter, built, stream=stream)
    cards = [_compact(c.to_dict()) for c in built]
    return {
        "key": key,
        "source": adapter.name,
        "entries": [_entry(c) for c in cards],
        "cards": [json.dumps(c, separators=(",", ":"), sort_keys=True) for c in cards],
    }


def _own_adapter(source: str, adapter: SourceAdapter) -> bool:
    """Whether ``adapter`` is omnizoo's own for ``source`` (prebuilt indexes are for those)."""
    from ..sources.table import adapter_path

    cls = type(adapter)
    return adapter_path(source) == f"{cls.__module__}:{cls.__qualname__}"


def prebuilt_path(key: str) -> Path:
    """Where the package keeps the prebuilt index of ``key`` (it may not exist)."""
    from ..sources.packaged import PREBUILT_DIR

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
        idx.path = path
    return idx


def load_index(source: str, *, rebuild: bool = False) -> SourceIndex:
    """The card index of ``source``: from memory, else from disk, else the package's prebuilt
    index, else built (announced on stderr) and saved. ``rebuild``: build it (and save it)
    whatever memory, disk and the package hold."""
    settings = get_settings()
    adapter = get_adapter(source)
    key = adapter.index_key()
    cache_key = (source, str(settings.index_dir), settings.card_cache)
    with _lock:
        idx = _indexes.get(cache_key)
        if idx is not None and idx.key == key and not rebuild:
            return idx
        path = _index_path(source, key)
        idx = None
        if settings.card_cache and not rebuild:
            idx = _read_index(path, source, key)
            if idx is None and _own_adapter(source, adapter):
                idx = _read_prebuilt(source, key, path)
        if idx is None:
            idx = _build(adapter, source, key, path, settings.card_cache)
        _indexes[cache_key] = idx
        return idx


def _build(adapter: SourceAdapter, source: str, key: str, path: Path, save: bool) -> SourceIndex:
    from ..sources.counting import progress_stream

    started = time.monotonic()
    sys.stderr.write(
        f"omnizoo: building the {source} card index ({key}): reading what the installed "
        f"library declares, once per library version\n"
    )
    sys.stderr.flush()
    data = build_payload(adapter, stream=progress_stream(), key=key)
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


@contextlib.contextmanager
def _rng_untouched() -> Iterator[None]:
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


def _rebuild_index(source: str, damaged: Path | None) -> SourceIndex:
    """Build ``source``'s index afresh (ignoring the damaged file, which is replaced)."""
    with _lock:
        if damaged is not None:
            with contextlib.suppress(OSError):
                damaged.unlink()
        return load_index(source, rebuild=True)


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
        return SourceIndex.from_entries(source, key, [tuple(e) for e in entries], cards)
    except (ValueError, AttributeError, TypeError):
        return None


def _read_index(path: Path, source: str, key: str) -> SourceIndex | None:
    """The index in ``path``; None when it is missing, stale or corrupt (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None  # corrupt or unreadable: rebuild
    idx = _from_payload(data, source, key)
    if idx is not None:
        idx.path = path
    return idx


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
            current.add(_index_path(source, get_adapter(source).index_key()).name)
        except Exception:  # an adapter that fails here: leave its files alone
            continue
        judged.append(source)
    return sorted(
        path
        for path in directory.glob("*.json")
        if path.name not in current and any(path.name.startswith(f"{s}-") for s in judged)
    )


def reset_indexes() -> None:
    """Forget the in-memory indexes and adapters (tests; after changing OMNIZOO_HOME)."""
    with _lock:
        _indexes.clear()
        _adapters.clear()
