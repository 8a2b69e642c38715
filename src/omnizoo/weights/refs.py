"""Pointing refs (URLs and model names) at a verified blob, safely beside ``cache prune``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from . import fsafe
from .cache import Cache
from .verification import state_of

__all__ = ["point_refs", "points_at"]

log = logging.getLogger("omnizoo.weights")


def point_refs(
    cache: Cache,
    digest: str,
    urls: Sequence[str],
    *,
    name: str | None,
    fetched_from: str | None = None,
    verification: str | None = None,
    revision: str | None = None,
    git_sha1: str | None = None,
) -> bool:
    """Point every URL (and ``name``) at the blob ``digest``; False when the blob is gone.

    Refs are written holding the cache guard shared, after checking that the blob is still
    there: a concurrent ``cache prune`` (which deletes unreferenced blobs holding it
    exclusively) either sees the new ref or has already deleted the blob, which then is not
    handed out. A cache hit whose refs are all in place writes (and locks) nothing. On a
    read-only cache the refs are not written, and the blob is served all the same.
    """
    todo = [
        url
        for url in urls
        if fetched_from is not None or not points_at(cache.ref(url), digest, name, verification)
    ]
    if not todo:
        return True
    with cache.guard():
        if fsafe.lstat_regular(cache.blob_path(digest)) is None:
            return False
        for url in todo:
            try:
                cache.add_ref(
                    url,
                    digest,
                    name=name,
                    fetched_from=fetched_from,
                    verification=verification,
                    revision=revision,
                    git_sha1=git_sha1,
                )
            except OSError as exc:
                if not fsafe.is_readonly_error(exc):
                    raise
                log.debug("read-only cache: not recording %s -> %s (%s)", url, digest, exc)
                break
    return True


def points_at(
    ref: dict[str, Any] | None, digest: str, name: str | None, verification: str | None
) -> bool:
    return (
        ref is not None
        and ref["sha256"] == digest
        and (not name or name in ref["names"])
        and (verification is None or state_of(ref) == verification)
    )
