"""Serving a weights request without downloading it: the weights cache, then another tool's
cache (adopted against an independent hash), then offline mode.

:func:`serve_without_download` runs those steps in order for :func:`omnizoo.weights.download`'s
chain and says either "here is the file" or "download it, expecting this"; :func:`find_cached`
is the cache lookup it (and the download, under its lock) uses: stats and refs, never a hash.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NoReturn

from ..errors import DownloadError, OfflineError, UnpinnedError
from ..settings import Settings
from . import fsafe
from .cache import Cache
from .ecosystem import from_other_caches, unverified_from_hf_cache
from .expect import ask_origin, ref_urls
from .origin import HubFile
from .refs import point_refs
from .verification import (
    Expected,
    Fetched,
    check_file_format,
    how_to_pin,
    report,
    state_of,
    strongest,
)

log = logging.getLogger("omnizoo.weights")

__all__ = ["find_cached", "finish", "serve_without_download"]


def serve_without_download(
    cache: Cache,
    urls: tuple[str, ...],
    hub: HubFile | None,
    want: Expected,
    *,
    name: str | None,
    fmt: str | None,
    hf_hub_id: str | None,
    settings: Settings,
    what: str,
) -> Fetched | Expected:
    """The file for this request when no download is needed (a verified cached copy, another
    cache's copy that matches an independent hash, an unverified copy offline), else what the
    download must match (``want``, with the origin's sha256 once asked). Offline with nothing
    usable: :class:`~omnizoo.errors.OfflineError`."""
    hit = find_cached(cache, ref_urls(urls, hub, want.revision), want, name)
    hub_offline = hub is not None and settings.hf_hub_offline
    if hit is not None and (hit.verified or hub is None or settings.offline or hub_offline):
        if not hit.verified and hub is not None:
            log.warning("%s: serving a cached file never checked against its origin", what)
        return finish(hit, fmt, what)
    # Another tool's cache, only against a hash known independently of it (never its names).
    adopted = from_other_caches(cache, urls, hub, want, name, fmt, settings, hf_hub_id)
    if adopted is not None:  # verified bytes another cache already had: no request
        return finish(adopted, None, what)
    if settings.offline or hub_offline:
        adopted, why = unverified_from_hf_cache(
            cache, urls, hub, want, name, fmt, settings, hf_hub_id
        )
        if adopted is not None:
            return finish(adopted, None, what)
        _raise_offline(what, urls[0], cache, settings, why)
    if hub is not None and want.sha256 is None:
        try:
            want = ask_origin(hub, want, urls, settings, what)
        except (DownloadError, UnpinnedError) as exc:
            if hit is None:
                raise
            # The origin cannot be asked now: the copy already here is served, as offline
            # (still unverified, so never unpickled); the next online use checks it again.
            log.warning("%s: serving a cached file not checked against its origin (%s)", what, exc)
            return finish(hit, fmt, what)
        hit = find_cached(cache, ref_urls(urls, hub, want.revision), want, name)
        if hit is not None:  # e.g. bytes cached before, now matched to the origin's sha256
            return finish(hit, fmt, what)
        # The Hugging Face cache's copy, if it is what the origin announced: no body needed.
        adopted = from_other_caches(cache, urls, hub, want, name, fmt, settings, hf_hub_id)
        if adopted is not None:
            return finish(adopted, None, what)
    return want


def _raise_offline(
    what: str, url: str, cache: Cache, settings: Settings, why: list[str]
) -> NoReturn:
    """The error for a file that offline mode cannot get (with why the Hugging Face cache's
    copy, if any, was not used)."""
    unused = ""
    if why:
        unused = (
            " The copy in the Hugging Face cache was not used: "
            + "; ".join(why)
            + f"; to use it offline, {how_to_pin(what, url)}"
        )
    if not settings.offline:
        raise OfflineError(
            f"{what} is a Hugging Face file, not in the weights cache ({cache.root}) nor in the "
            f"Hugging Face cache ({settings.hf_hub_cache}), and HF_HUB_OFFLINE=1 forbids asking "
            f"the Hub; unset HF_HUB_OFFLINE, or fetch it where the Hub is reachable.{unused}",
            url=url,
        )
    raise OfflineError(
        f"{what} is not in the weights cache ({cache.root}) and OMNIZOO_OFFLINE=1 forbids "
        f"downloading it. On a machine with network access run `omnizoo download {what}` "
        "and copy its OMNIZOO_HOME directory here (set OMNIZOO_HOME to it), or pass "
        f"checkpoint_path= with a local copy of the file.{unused}",
        url=url,
    )


def finish(fetched: Fetched, fmt: str | None, what: str) -> Fetched:
    """``fetched``, its file checked against the declared format ``fmt`` (None: already
    checked), and recorded for :func:`~omnizoo.weights.verification.recording`."""
    check_file_format(fetched.path, fmt, what)
    return report(fetched)


def find_cached(
    cache: Cache,
    urls: Sequence[str],
    want: Expected,
    name: str | None,
) -> Fetched | None:
    """A verified cached file for this request, or None. Costs stats, never a hash."""
    refs = {url: cache.ref(url) for url in urls}
    candidates: list[str] = []
    if want.sha256 is not None:
        candidates.append(want.sha256)
    for ref in refs.values():
        if ref is not None and ref["sha256"] not in candidates:
            candidates.append(ref["sha256"])
    for digest in candidates:
        if want.sha256 is not None and digest != want.sha256:
            continue  # a URL once served other bytes; the caller asked for specific ones
        if want.hash_prefix is not None and not digest.startswith(want.hash_prefix):
            continue
        same = [r for r in refs.values() if r is not None and r["sha256"] == digest]
        if want.git_sha1 is not None and not any(r.get("git_sha1") == want.git_sha1 for r in same):
            continue  # only a ref knows a blob's git sha1 (recorded when it was checked)
        path = cache.valid_blob(digest)
        st = fsafe.lstat_regular(path) if path is not None else None
        if path is None or st is None:
            continue  # missing, or deleted (`cache prune`) right after it was checked
        size = st.st_size
        if want.size is not None and size != want.size:
            continue
        state = strongest(want.state if want.known else None, *(state_of(r) for r in same))
        recorded = [r["revision"] for r in same if isinstance(r.get("revision"), str)]
        revision = want.revision or (recorded[0] if recorded else None)
        # e.g. same bytes via a second URL: point it at the blob (if prune took the blob
        # meanwhile, it is not a hit after all)
        if not point_refs(
            cache,
            digest,
            urls,
            name=name,
            verification=state,
            revision=revision,
            git_sha1=want.git_sha1,
        ):
            continue
        return Fetched(path, digest, size, state, tuple(urls), name, revision)
    return None
