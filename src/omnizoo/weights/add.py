"""``omnizoo cache add FILE``: put a file you already have into the cache, verified exactly as
its download would be, so that later requests for it make no request at all.

The file must match what the request knows in advance: a ``sha256=`` you give, the card's or a
lock file's sha256, the file name's hash prefix (torch.hub's convention), or, for a Hugging
Face file, the sha256 its origin announces (one ``HEAD``; offline, pin it instead). A file
nothing can be checked against is refused: the cache never holds a file on trust from
``cache add``. The file is copied (the cache's blobs are read-only and content-addressed).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CacheError, OfflineError, UnpinnedError
from ..settings import get_settings
from .cache import Cache, url_key
from .ecosystem import Found, adopt
from .expect import ask_origin, expected, ref_urls
from .hashing import parse_hash_prefix
from .lockfile import WeightsLock, active_lock
from .origin import hub_file
from .verification import Fetched, report

__all__ = ["add_file"]


def add_file(
    path: str | os.PathLike[str],
    urls: tuple[str, ...],
    *,
    sha256: str | None = None,
    hash_prefix: str | None = None,
    size: int | None = None,
    fmt: str | None = None,
    name: str | None = None,
    hf_hub_id: str | None = None,
    lock: str | Path | WeightsLock | bool | None = None,
) -> Fetched:
    """Verify the local file ``path`` as the file ``urls`` name and add it to the cache (see
    the module docstring). Raises :class:`~omnizoo.errors.UnpinnedError` when nothing is known
    to check it against, :class:`~omnizoo.errors.HashMismatchError` (and friends) when it is
    not that file."""
    settings = get_settings()
    # Absolute now: the ref records where the file came from (a relative path has no URI).
    source = Path(path).expanduser().absolute()
    if not source.is_file():
        raise CacheError(f"cache add: {source} is not a regular file (or does not exist)")
    what = name or urls[0]
    prefix = hash_prefix or parse_hash_prefix(urls[0])
    want = expected(urls, sha256, prefix, size)
    book = active_lock(lock, settings)
    if book is not None:
        want = book.expect(want, name=name, urls=urls, caller_sha256=sha256 is not None)
    hub = hub_file(urls[0], settings, hf_hub_id)
    if hub is not None and want.sha256 is None:
        if settings.offline or settings.hf_hub_offline:
            raise OfflineError(
                f"cache add {source} as {what}: a Hugging Face file is checked against the "
                "sha256 its origin announces, and offline mode forbids asking it; pass its "
                "--sha256 (or use a lock file)",
                url=urls[0],
            )
        want = ask_origin(hub, want, urls, settings, what)
    if not want.known:
        raise UnpinnedError(
            f"cache add {source} as {what}: nothing is known to check the file against (no "
            "card sha256, no lock entry, no hash prefix in the file name); pass --sha256 with "
            "the digest its publisher gives"
        )
    fetched = adopt(
        Cache(settings.weights_dir),
        Found(source, want, "file given to cache add"),
        ref_urls(urls, hub, want.revision),
        name=name,
        fmt=fmt,
        key=want.sha256 or url_key(urls[0]),
        strict=True,
    )
    if fetched is None:  # pragma: no cover - strict adoption raises instead
        raise CacheError(f"cache add: {source} could not be added (removed by a prune?)")
    return report(fetched)
