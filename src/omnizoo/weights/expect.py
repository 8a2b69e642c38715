"""What a download request expects before its bytes arrive, and where the bytes may come from.

The expectation (:class:`~.verification.Expected`) starts with what the request knows (a
``sha256=``, the card's digest or size, a file-name hash prefix); a lock file may replace it
(:meth:`~.lockfile.WeightsLock.expect`); for a Hugging Face file with no pinned digest it comes
from the origin's HEAD (:func:`ask_origin`). The helpers here also say which URLs get a ref
(the chain plus a Hub file's commit-pinned URL) and where a Hub URL really is.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DownloadError, HashMismatchError, RemoteNotFoundError, UnpinnedError
from ..settings import Settings
from .hashing import normalize_sha256, parse_hash_prefix
from .origin import HubFile, hub_file, origin_url, resolve_on_origin
from .verification import ORIGIN, PINNED, PREFIX, Expected, how_to_pin, plan_candidates

__all__ = ["ask_origin", "expected", "on_origin", "pinned_url", "ref_urls"]


def expected(
    urls: Sequence[str], sha256: str | None, hash_prefix: str | None, size: int | None
) -> Expected:
    """What the request itself knows (before any lock or origin is asked)."""
    if sha256 is not None:
        try:
            sha256 = normalize_sha256(sha256)
        except ValueError as exc:
            from ..errors import ConfigurationError

            raise ConfigurationError(str(exc)) from None
        # The full digest decides; a file name's "-<hex>." may be anything.
        return Expected(sha256=sha256, size=size, state=PINNED)
    hash_prefix = hash_prefix or parse_hash_prefix(urls[0])
    if hash_prefix is not None:
        return Expected(hash_prefix=hash_prefix.lower(), size=size, state=PREFIX)
    return Expected(size=size)


def ref_urls(urls: tuple[str, ...], hub: HubFile | None, revision: str | None) -> tuple[str, ...]:
    """The URLs that get a ref: the chain, plus a Hub file's URL at its pinned commit."""
    if hub is None or not revision or hub.revision == revision:
        return urls
    pinned = hub.at(revision).url
    return urls if pinned in urls else (*urls, pinned)


def pinned_url(url: str, hub: HubFile | None, revision: str | None) -> str:
    """A Hub URL at the pinned commit (the body must be the file the HEAD described)."""
    if hub is None or not revision or url != hub.url:
        return url
    return hub.at(revision).url


def on_origin(url: str, settings: Settings) -> str:
    """A huggingface.co URL on OMNIZOO_HF_ORIGIN (where the Hub really is)."""
    hub = hub_file(url, settings)
    return origin_url(hub, settings) if hub is not None else url


def ask_origin(
    hub: HubFile, want: Expected, urls: tuple[str, ...], settings: Settings, what: str
) -> Expected:
    """HEAD the Hub file on its origin; the request then expects what the origin announced."""
    try:
        facts = resolve_on_origin(hub, settings)
    except RemoteNotFoundError:
        raise
    except DownloadError as exc:
        mirrored = any(c.mirror for c in plan_candidates(urls, settings))
        if not mirrored:
            raise
        named = f"{what}: " if what != urls[0] else ""
        raise UnpinnedError(
            f"{named}{exc}; without the origin's sha256 the mirror cannot be trusted with "
            f"this Hugging Face file; {how_to_pin(what, urls[0])}"
        ) from exc
    if want.size is not None and facts.size is not None and want.size != facts.size:
        raise HashMismatchError(
            f"{what}: the card says {want.size} bytes, the origin announces {facts.size}"
        )
    return Expected(
        sha256=facts.sha256,
        git_sha1=facts.git_sha1,
        size=facts.size if facts.size is not None else want.size,
        state=ORIGIN,
        revision=facts.commit,
    )
