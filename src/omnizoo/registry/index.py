"""The on-disk card index: one JSON file per (source, library version, card schema).

Building cards imports the source library (timm, torchvision, ...); this cache makes every
later ``list_models()`` / ``get_card()`` a JSON read. The file name is the adapter's
:meth:`~omnizoo.sources.base.SourceAdapter.index_key`, so upgrading a library (or bumping
``INDEX_SCHEMA``) builds a fresh index. Writes are atomic (temp file + rename), so concurrent
processes never see half a file.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DependencyError, UnknownSourceError
from ..settings import get_settings
from .card import ModelCard

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = ["ADAPTER_MODULES", "SourceIndex", "get_adapter", "load_index", "reset_indexes"]

#: source name -> modules that may define its adapter (first importable wins). The adapter is
#: the :class:`~omnizoo.sources.base.SourceAdapter` subclass whose ``name`` is the source.
ADAPTER_MODULES: dict[str, tuple[str, ...]] = {
    "torchvision": ("omnizoo.sources.torchvision",),
    "timm": ("omnizoo.sources.timm",),
    "cadene": ("omnizoo.sources.cadene",),
    "efficientnet": ("omnizoo.sources.efficientnet",),
    "onnx": ("omnizoo.sources.onnx", "omnizoo.sources.onnx_zoo"),
}

_lock = threading.RLock()
_adapters: dict[str, SourceAdapter] = {}
_indexes: dict[tuple[str, str, bool], SourceIndex] = {}


def get_adapter(source: str) -> SourceAdapter:
    """The adapter instance of ``source`` (imports only omnizoo's module, not the library)."""
    from ..sources.base import SourceAdapter

    with _lock:
        if source in _adapters:
            return _adapters[source]
        modules = ADAPTER_MODULES.get(source)
        if modules is None:
            raise UnknownSourceError(
                source, message=f"unknown source {source!r}; sources: {', '.join(ADAPTER_MODULES)}"
            )
        errors: list[str] = []
        for mod_name in modules:
            try:
                module = importlib.import_module(mod_name)
            except ModuleNotFoundError as exc:
                if exc.name == mod_name:
                    continue
                errors.append(f"{mod_name}: {exc}")
                continue
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, SourceAdapter)
                    and getattr(value, "name", None) == source
                ):
                    adapter = value()
                    _adapters[source] = adapter
                    return adapter
        detail = "; ".join(errors) or "no adapter module is installed"
        raise DependencyError(f"source {source!r} is not available ({detail})")


@dataclass
class SourceIndex:
    """The cards of one source, as raw dicts turned into :class:`ModelCard` on demand."""

    source: str
    key: str
    raw: dict[str, dict[str, Any]]  # card name -> card dict
    # arch -> (tags in source order, default tag or None, task)
    archs: dict[str, tuple[tuple[str, ...], str | None, str]] = field(default_factory=dict)
    _cards: dict[str, ModelCard] = field(default_factory=dict, repr=False)
    # lower-cased arch -> arch, for case-insensitive lookups
    _lower: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_cards(cls, source: str, key: str, cards: list[dict[str, Any]]) -> SourceIndex:
        raw: dict[str, dict[str, Any]] = {}
        tags: dict[str, list[str]] = {}
        default: dict[str, str | None] = {}
        task: dict[str, str] = {}
        for c in cards:
            arch, tag = c["arch"], c.get("tag")
            name = f"{source}:{arch}" + (f".{tag}" if tag else "")
            raw[name] = c
            tags.setdefault(arch, [])
            if tag:
                tags[arch].append(tag)
            if c.get("is_default") or arch not in task:
                task[arch] = c.get("task", "classification")
            if c.get("is_default"):
                default[arch] = tag
        archs = {
            a: (tuple(t), default.get(a, t[0] if t else None), task[a]) for a, t in tags.items()
        }
        idx = cls(source, key, raw, archs)
        idx._lower = {a.lower(): a for a in archs}
        return idx

    def card(self, name: str) -> ModelCard:
        card = self._cards.get(name)
        if card is None:
            card = ModelCard.from_dict(self.raw[name])
            self._cards[name] = card
        return card

    def find_arch(self, arch: str) -> str | None:
        if arch in self.archs:
            return arch
        return self._lower.get(arch.lower())

    def cards(self) -> Iterator[ModelCard]:
        for name in self.raw:
            yield self.card(name)


def _index_path(source: str, key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in key)
    return get_settings().index_dir / f"{safe}.json"


def _write_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


def load_index(source: str) -> SourceIndex:
    """The card index of ``source``: from memory, else from disk, else built (and saved)."""
    settings = get_settings()
    adapter = get_adapter(source)
    key = adapter.index_key()
    cache_key = (source, str(settings.index_dir), settings.card_cache)
    with _lock:
        idx = _indexes.get(cache_key)
        if idx is not None and idx.key == key:
            return idx
        path = _index_path(source, key)
        data: Any = None
        if settings.card_cache and path.is_file():
            try:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
                if data.get("key") != key or not isinstance(data.get("cards"), list):
                    data = None
            except (OSError, ValueError, AttributeError):
                data = None  # corrupt or unreadable: rebuild
        if data is None:
            cards = adapter.build_cards()
            data = {"key": key, "source": source, "cards": [_compact(c.to_dict()) for c in cards]}
            if settings.card_cache:
                try:
                    _write_atomic(path, data)
                except OSError as exc:
                    warnings.warn(f"omnizoo: cannot write card index {path}: {exc}", stacklevel=2)
        idx = SourceIndex.from_cards(source, key, data["cards"])
        _indexes[cache_key] = idx
        return idx


def reset_indexes() -> None:
    """Forget the in-memory indexes and adapters (tests; after changing OMNIZOO_HOME)."""
    with _lock:
        _indexes.clear()
        _adapters.clear()
