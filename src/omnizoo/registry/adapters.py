"""One adapter instance per source, imported on first use from the sources table.

Importing an adapter imports only omnizoo's module for the source, never the source library
itself (timm, torchvision, ...): that happens when the adapter builds cards or models.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

from ..errors import DependencyError, UnknownSourceError

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = ["get_adapter", "is_own_adapter", "reset_adapters"]

_lock = threading.RLock()
_adapters: dict[str, SourceAdapter] = {}


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


def is_own_adapter(source: str, adapter: SourceAdapter) -> bool:
    """Whether ``adapter`` is omnizoo's own for ``source`` (prebuilt indexes are for those)."""
    from ..sources.table import adapter_path

    cls = type(adapter)
    return adapter_path(source) == f"{cls.__module__}:{cls.__qualname__}"


def reset_adapters() -> None:
    """Forget the adapter instances (tests; with :func:`~omnizoo.registry.index.reset_indexes`)."""
    with _lock:
        _adapters.clear()
