"""Get a verified weights file into the cache and return its path: the layer's entry points.

>>> from omnizoo import download_weights                      # doctest: +SKIP
>>> download_weights("torchvision:resnet18.IMAGENET1K_V1")    # doctest: +SKIP
PosixPath('~/.cache/omnizoo/weights/blobs/sha256/f37072fd...')

Verification: the full sha256 when known, else the torch.hub hash prefix in the file name,
plus the size when known, plus a sniff that rejects HTML pages and Git-LFS pointers. A file
with no hash at all is accepted after the sniff and its sha256 is recorded, so every later
read is checked against it. Only verified bytes are renamed into the cache.

**The entry point** other layers call for a card's weights is :func:`fetch_verified` (a
:class:`~omnizoo.values.card.WeightsFile` in, a
:class:`~omnizoo.weights.verification.Fetched` out: path, sha256, verification state,
revision); ``create_model`` and ``omnizoo.download_weights`` use it. The others are its
narrower forms, all one chain (:func:`_fetch`):

* :func:`fetch_weights`: :func:`fetch_verified`'s path only (sources that need a file
  beside the model: torchvision's upstream metadata, the ONNX test data);
* :func:`download_url`: a bare URL with an optional sha256 and lock file
  (``download_weights(url)``);
* :func:`fetch_url`: a bare URL with an optional sha256 and size, no lock file (the timm hub
  config, the ONNX manifest);
* :func:`get_cache`: the :class:`~omnizoo.weights.cache.Cache` of the settings in force
  (``omnizoo cache``), :func:`is_url`: a URL or a model name.

The chain's steps live beside this module: :mod:`.lookup` serves a request without a download
(this cache, another tool's cache, offline mode), :mod:`.download_chain` downloads, checks and
publishes a blob.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CacheError, DownloadError, IntegrityError, UnpinnedError
from ..settings import Settings, get_settings
from .cache import Cache, url_key
from .download_chain import download_chain, stall_timeout
from .expect import expected, on_origin, pinned_url, ref_urls
from .hashing import parse_hash_prefix
from .lockfile import WeightsLock, active_lock
from .lookup import find_cached, finish, serve_without_download
from .origin import hub_file
from .refs import point_refs
from .verification import Fetched, check_format, check_git_sha1, how_to_pin, plan_candidates

log = logging.getLogger("omnizoo.weights")

if TYPE_CHECKING:  # pragma: no cover
    from ..values.card import WeightsFile

__all__ = [
    "download_url",
    "fetch_url",
    "fetch_verified",
    "fetch_weights",
    "get_cache",
    "is_url",
]


def is_url(value: str) -> bool:
    """Whether ``value`` is a URL (as opposed to a model name)."""
    return "://" in value


def get_cache(settings: Settings | None = None) -> Cache:
    """The cache object for the settings in force."""
    return Cache((settings or get_settings()).weights_dir)


def download_url(
    url: str,
    *,
    sha256: str | None = None,
    lock: str | Path | WeightsLock | bool | None = None,
) -> Path:
    """The verified file for ``url`` in the cache, downloaded once (see
    :func:`omnizoo.download_weights`, which also takes model names)."""
    return _fetch((url,), sha256=sha256, hash_prefix=None, size=None, lock=lock).path


def fetch_url(url: str, *, sha256: str | None = None, size: int | None = None) -> Path:
    """Fetch one URL (with OMNIZOO_MIRRORS/HF_ENDPOINT applied) into the cache."""
    return _fetch((url,), sha256=sha256, hash_prefix=None, size=size).path


def fetch_weights(weights: WeightsFile, *, name: str | None = None) -> Path:
    """Fetch a card's :class:`~omnizoo.values.card.WeightsFile` (its ``urls`` are a mirror
    chain tried in order, each preceded by its OMNIZOO_MIRRORS rewrites)."""
    return fetch_verified(weights, name=name).path


def fetch_verified(
    weights: WeightsFile,
    *,
    name: str | None = None,
    lock: str | Path | WeightsLock | bool | None = None,
) -> Fetched:
    """:func:`fetch_weights`, returning the file with how it was verified
    (:class:`~omnizoo.weights.verification.Fetched`: path, sha256, size, ``verification``
    state, revision). The card's declared format is enforced."""
    prefix = weights.hash_prefix or parse_hash_prefix(weights.filename or weights.url)
    if weights.url.startswith("file:"):  # a local file: checked where it is (weights.local_files)
        from .local_files import fetch_local

        return fetch_local(
            weights.url,
            sha256=weights.sha256,
            hash_prefix=prefix,
            size=weights.size,
            fmt=weights.format,
            name=name,
        )
    return _fetch(
        tuple(weights.urls),
        sha256=weights.sha256,
        hash_prefix=prefix,
        size=weights.size,
        name=name,
        fmt=weights.format,
        hf_hub_id=weights.hf_hub_id,
        lock=lock,
    )


def _fetch(
    urls: Sequence[str],
    *,
    sha256: str | None,
    hash_prefix: str | None,
    size: int | None,
    name: str | None = None,
    fmt: str | None = None,
    hf_hub_id: str | None = None,
    lock: str | Path | WeightsLock | bool | None = None,
) -> Fetched:
    """The chain behind every entry point: what the file must match (caller, card, lock
    file), served without a download when it can be (:mod:`.lookup`), else downloaded under
    the file's cache lock from the usable candidate URLs (:mod:`.download_chain`) and pointed
    at by a ref for each of its URLs."""
    settings = get_settings()
    if not urls:
        raise DownloadError(f"no URL to download {name or 'the weights'} from")
    urls = tuple(urls)
    want = expected(urls, sha256, hash_prefix, size)
    book = active_lock(lock, settings)
    if book is not None:
        want = book.expect(want, name=name, urls=urls, caller_sha256=sha256 is not None)
    hub = hub_file(urls[0], settings, hf_hub_id)
    what = name or urls[0]
    cache = get_cache(settings)

    def lookup() -> Path | None:
        found = find_cached(cache, ref_urls(urls, hub, want.revision), want, name)
        return found.path if found is not None else None

    served = serve_without_download(
        cache,
        urls,
        hub,
        want,
        name=name,
        fmt=fmt,
        hf_hub_id=hf_hub_id,
        settings=settings,
        what=what,
    )
    if isinstance(served, Fetched):
        return served
    want = served  # to download, with the origin's sha256 when it was asked
    candidates = plan_candidates(
        urls,
        settings,
        pin=lambda url: pinned_url(url, hub, want.revision),
        origin=lambda url: on_origin(url, settings),
    )
    usable = [c.url for c in candidates if want.known or not c.mirror]
    skipped = [c.url for c in candidates if c.mirror and not want.known]
    if not usable:
        raise UnpinnedError(
            f"{what}: not downloaded from {', '.join(skipped)}: a mirror is used only for a "
            "file whose sha256 is known before its bytes are fetched, and this one has none "
            f"(no card hash, no file-name prefix, no lock entry); {how_to_pin(what, urls[0])}"
        )
    if skipped:
        log.info("%s: mirrors not used (no expected hash): %s", what, ", ".join(skipped))
    key = want.sha256 or url_key(urls[0])
    cache.ensure()
    stall = stall_timeout(settings)
    linked = ref_urls(urls, hub, want.revision)
    with cache.lock(key, ready=lookup, stall_timeout=stall) as done:
        if done is not None:
            found = find_cached(cache, linked, want, name)
            if found is not None:
                return finish(found, fmt, what)
        hit = find_cached(cache, linked, want, name)  # another process may have just finished
        if hit is not None:
            return finish(hit, fmt, what)

        def post_check(temp: Path, head: bytes, url: str) -> None:
            check_format(head, fmt, url)
            if want.git_sha1 is not None:
                check_git_sha1(temp, want.git_sha1, url)

        for attempt in (1, 2):
            try:
                blob, fetched = download_chain(
                    cache,
                    key,
                    usable,
                    settings,
                    want.sha256,
                    want.hash_prefix,
                    want.size,
                    post_check,
                )
            except (DownloadError, IntegrityError) as exc:
                cache.clean_leftovers(key)  # dead processes' partials nobody could resume
                if skipped:
                    raise UnpinnedError(
                        f"{exc}; the mirror(s) {', '.join(skipped)} were not used: the file's "
                        f"sha256 is not known in advance; {how_to_pin(what, urls[0])}"
                    ) from exc
                raise
            except Exception:
                cache.clean_leftovers(key)
                raise
            cache.clean_leftovers(key)  # (not after Ctrl-C: that partial is kept for a resume)
            # Before the lock is released, so that waiters find the refs; under the cache
            # guard, so that `cache prune` cannot delete the blob before a ref points at it.
            if point_refs(
                cache,
                blob.name,
                linked,
                name=name,
                fetched_from=fetched,
                verification=want.state,
                revision=want.revision,
                git_sha1=want.git_sha1,
            ):
                break
            # The blob went before a ref pointed at it. `publish` keeps a copy that is already
            # there (an old blob no ref points at) instead of ours, and `cache prune` may
            # delete that one in between: fetch once more, then ours is published afresh.
            if attempt == 2:
                raise CacheError(
                    f"{blob} was deleted (`omnizoo cache remove`?) right after it was "
                    f"downloaded from {fetched}; run the request again"
                )
            log.info("%s: %s was deleted before a ref pointed at it; fetching it again", what, blob)
    result = Fetched(blob, blob.name, blob.stat().st_size, want.state, linked, name, want.revision)
    return finish(result, None, what)  # the format was checked before the rename
