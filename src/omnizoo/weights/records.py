"""The cache's small JSON records (refs, metas, partial-download notes) and digests: read and
written without following symlinks, checked before use."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from . import fsafe

__all__ = ["clean_ref", "is_digest", "read_json", "size_of", "write_json"]

_DIGEST = re.compile(r"[0-9a-f]{64}")
_MAX_JSON_BYTES = 1 << 20  # refs and metas are a few hundred bytes


def is_digest(value: object) -> bool:
    """Whether ``value`` is a sha256 hex digest as the cache names blobs (64 lower-case hex)."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(fsafe.read_regular(path, _MAX_JSON_BYTES))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return None  # a torn/corrupt metadata file, a symlink or a FIFO counts as missing
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``data`` (temp file + rename; umask honoured)."""
    fsafe.write_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


def size_of(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return 0


def clean_ref(data: dict[str, Any]) -> dict[str, Any] | None:
    """A ref as the cache may use it, or None: ``url`` a string, ``sha256`` a digest (never a
    path such as ``../../x``); ``names`` keeps only strings, ``filename`` only a string."""
    if not isinstance(data.get("url"), str) or not is_digest(data.get("sha256")):
        return None
    clean = dict(data)
    names = data.get("names")
    clean["names"] = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    if not isinstance(data.get("filename"), str):
        clean["filename"] = ""
    return clean
