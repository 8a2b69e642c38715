"""Get a verified weights file into the cache and return it: the layer's one entry point.

>>> from omnizoo import download_weights                      # doctest: +SKIP
>>> download_weights("torchvision:resnet18.IMAGENET1K_V1")    # doctest: +SKIP
PosixPath('~/.cache/omnizoo/weights/blobs/sha256/f37072fd...')

Verification: the full sha256 when known, else the torch.hub hash prefix in the file name,
plus the size when known, plus a sniff that rejects HTML pages and Git-LFS pointers. A file
with no hash at all is accepted after the sniff and its sha256 is recorded, so every later
read is checked against it. Only verified bytes are renamed into the cache.

**The one entry point** the layers above ``weights/`` call for verified bytes is
:func:`fetch_verified`: a card's :class:`~omnizoo.values.card.WeightsFile` (its ``urls`` a
mirror chain, its hashes, size and format enforced) or a bare URL (an optional ``sha256`` and
``size`` pin it; else the hash prefix in its file name) in, a
:class:`~omnizoo.weights.verification.Fetched` out (path, sha256, verification state,
revision; ``.path`` when only the file is wanted). ``create_model``,
``omnizoo.download_weights``, ``omnizoo lock`` and the sources' side files (timm's Hub
``config.json``, the ONNX manifest and test data, torchvision's ``weights_backbone``) all call
it; ``tests/test_download_entry.py`` holds the rule. Everything else here is the chain behind
it (:func:`_fetch`): :mod:`.lookup` serves a request without a download (this cache, another
tool's cache, offline mode), :mod:`.download_chain` downloads, checks and publishes a blob;
neither is called from outside ``weights/``. :func:`get_cache` (the
:class:`~omnizoo.weights.cache.Cache` of the settings in force, for ``omnizoo cache``) gets no
bytes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    CacheError,
    DownloadError,
    IntegrityError,
    RemoteNotFoundError,
    UnpinnedError,
)
from ..settings import Settings, get_settings
from .cache import Cache, url_key
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

__all__ = ["fetch_verified", "get_cache"]


def get_cache(settings: Settings | None = None) -> Cache:
    """The cache object for the settings in force (no download: ``omnizoo cache``)."""
    return Cache((settings or get_settings()).weights_dir)


def _unreachable_hint(what: str, urls: Sequence[str], settings: Settings, known: bool) -> str:
    """What to do when no URL of a file answers: work offline from a copy, use a mirror,
    or fill the cache on a connected machine and copy it here."""
    first = urls[0]
    prefix = first.rsplit("/", 1)[0] + "/"
    tried = f" ({len(urls)} URLs tried, mirrors included)" if len(urls) > 1 else ""
    mirror = (
        f'set OMNIZOO_MIRRORS=\'{{"{prefix}": "http://YOUR-MIRROR/PATH/"}}\' to fetch it '
        "from a mirror you reach (its bytes are checked against the same hash)"
        if known
        else "a mirror (OMNIZOO_MIRRORS) serves it once its sha256 is pinned by "
        f"`omnizoo lock {what}`"
    )
    return (
        f"{what} could not be downloaded{tried}. Without network access: set OMNIZOO_OFFLINE=1 "
        "and pass a local copy of the file as checkpoint_path= (`--checkpoint` on the command "
        f"line); or {mirror}; or run `omnizoo download {what}` on a connected machine and copy "
        f"its weights cache ($OMNIZOO_HOME/weights) to {settings.weights_dir} here"
    )


def fetch_verified(
    weights: WeightsFile | str,
    *,
    name: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    lock: str | Path | WeightsLock | bool | None = None,
) -> Fetched:
    """The verified file for ``weights`` in the cache, downloaded once: the weights layer's
    one entry point.

    ``weights``: a card's :class:`~omnizoo.values.card.WeightsFile` (its ``urls`` are a mirror
    chain tried in order, each preceded by its OMNIZOO_MIRRORS rewrites; its sha256 or hash
    prefix, size and declared format are enforced; a ``file:`` URL is checked where it is), or
    a bare URL string (no format is enforced; the torch.hub hash prefix in its file name
    applies unless ``sha256`` is given). ``sha256``/``size``: what the file must match, in
    place of the card's. ``name``: the model name, for messages, the lock file and the cache's
    refs. ``lock``: a lock file (path or :class:`~omnizoo.weights.lockfile.WeightsLock`) the
    file must match; None uses ``OMNIZOO_LOCK``, False none.

    Returns a :class:`~omnizoo.weights.verification.Fetched` (``path``, ``sha256``, ``size``,
    ``verification`` state, revision).

    Raises:
        OfflineError: OMNIZOO_OFFLINE is set and the file is not in the cache.
        DownloadError: every URL failed (RemoteNotFoundError: the origin says 404).
        HashMismatchError: the bytes do not match the expected sha256, prefix or size.
        NotAWeightsFileError: the bytes are an HTML page or a Git-LFS pointer.
        FormatMismatchError: the file is another format than the card declares.
        UnpinnedError: only mirrors could serve a file whose hash is not known in advance,
            or the lock file has no entry for it (NotInLockError).
        ConfigurationError: ``sha256`` is not a sha256.

    >>> from omnizoo.weights.download import fetch_verified
    >>> url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    >>> fetch_verified(url).verification                      # doctest: +SKIP
    'prefix'
    """
    if isinstance(weights, str):
        return _fetch((weights,), sha256=sha256, hash_prefix=None, size=size, name=name, lock=lock)
    if sha256 is not None or size is not None:
        weights = dataclasses.replace(
            weights,
            sha256=sha256 if sha256 is not None else weights.sha256,
            size=size if size is not None else weights.size,
        )
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
    """The chain behind :func:`fetch_verified`: what the file must match (caller, card, lock
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
    # the download machinery (transport, partial files, httpx) only when bytes must move: a
    # warm cache never imports it
    from .download_chain import download_chain, stall_timeout

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
                if isinstance(exc, DownloadError) and not isinstance(exc, RemoteNotFoundError):
                    hint = _unreachable_hint(what, usable, settings, want.known)
                    raise type(exc)(f"{exc}. {hint}", url=exc.url) from exc
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
