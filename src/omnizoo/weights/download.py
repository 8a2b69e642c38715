"""``download_weights``: get a verified weights file into the cache and return its path.

>>> from omnizoo import download_weights                      # doctest: +SKIP
>>> download_weights("torchvision:resnet18.IMAGENET1K_V1")    # doctest: +SKIP
PosixPath('~/.cache/omnizoo/weights/blobs/sha256/f37072fd...')

Verification: the full sha256 when known, else the torch.hub hash prefix in the file name,
plus the size when known, plus a sniff that rejects HTML pages and Git-LFS pointers. A file
with no hash at all is accepted after the sniff and its sha256 is recorded, so every later
read is checked against it. Only verified bytes are renamed into the cache.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import (
    CacheError,
    DownloadError,
    HashMismatchError,
    IntegrityError,
    OfflineError,
    RemoteNotFoundError,
    UnpinnedError,
)
from ..settings import Settings, get_settings
from . import fsafe
from .cache import Cache, url_key
from .ecosystem import from_other_caches, unverified_from_hf_cache
from .expect import ask_origin, expected, on_origin, pinned_url, ref_urls
from .hashing import (
    HashingWriter,
    check_digest,
    parse_hash_prefix,
    reject_if_not_weights,
)
from .lockfile import WeightsLock, active_lock
from .origin import hub_file
from .refs import point_refs
from .transport import stream_to
from .verification import (
    Expected,
    Fetched,
    check_file_format,
    check_format,
    check_git_sha1,
    how_to_pin,
    plan_candidates,
    report,
    state_of,
    strongest,
)

log = logging.getLogger("omnizoo.weights")

if TYPE_CHECKING:  # pragma: no cover
    from ..registry.card import WeightsFile

__all__ = [
    "download_url",
    "fetch_url",
    "fetch_verified",
    "fetch_weights",
    "get_cache",
    "is_url",
]

#: A check run on a finished download before it is published: (temp file, first bytes, URL).
PostCheck = Callable[[Path, bytes, str], None]


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
    """Fetch a card's :class:`~omnizoo.registry.card.WeightsFile` (its ``urls`` are a mirror
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
    if weights.url.startswith("file:"):  # a local file: checked where it is (weights.local)
        from .local import fetch_local

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
        found = _lookup(cache, ref_urls(urls, hub, want.revision), want, name)
        return found.path if found is not None else None

    hit = _lookup(cache, ref_urls(urls, hub, want.revision), want, name)
    hub_offline = hub is not None and settings.hf_hub_offline
    if hit is not None and (hit.verified or hub is None or settings.offline or hub_offline):
        if not hit.verified and hub is not None:
            log.warning("%s: serving a cached file never checked against its origin", what)
        return _done(hit, fmt, what)
    # Another tool's cache, only against a hash known independently of it (never its names).
    adopted = from_other_caches(cache, urls, hub, want, name, fmt, settings, hf_hub_id)
    if adopted is not None:  # verified bytes another cache already had: no request
        return _done(adopted, None, what)
    if settings.offline or hub_offline:
        adopted, why = unverified_from_hf_cache(
            cache, urls, hub, want, name, fmt, settings, hf_hub_id
        )
        if adopted is not None:
            return _done(adopted, None, what)
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
            return _done(hit, fmt, what)
        hit = _lookup(cache, ref_urls(urls, hub, want.revision), want, name)
        if hit is not None:  # e.g. bytes cached before, now matched to the origin's sha256
            return _done(hit, fmt, what)
        # The Hugging Face cache's copy, if it is what the origin announced: no body needed.
        adopted = from_other_caches(cache, urls, hub, want, name, fmt, settings, hf_hub_id)
        if adopted is not None:
            return _done(adopted, None, what)
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
            found = _lookup(cache, linked, want, name)
            if found is not None:
                return _done(found, fmt, what)
        hit = _lookup(cache, linked, want, name)  # another process may have just finished
        if hit is not None:
            return _done(hit, fmt, what)

        def post_check(temp: Path, head: bytes, url: str) -> None:
            check_format(head, fmt, url)
            if want.git_sha1 is not None:
                check_git_sha1(temp, want.git_sha1, url)

        for attempt in (1, 2):
            try:
                blob, fetched = _download_chain(
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
    return _done(result, None, what)  # the format was checked before the rename


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


def _done(fetched: Fetched, fmt: str | None, what: str) -> Fetched:
    check_file_format(fetched.path, fmt, what)
    return report(fetched)


def stall_timeout(settings: Settings) -> float:
    """How long a waiter tolerates a lock holder whose partial file does not grow: one
    attempt's timeouts plus the longest back-off, and never more than the total deadline."""
    backoff = settings.backoff * 2 ** min(settings.retries, 16)
    return min(
        settings.read_timeout + settings.connect_timeout + backoff, settings.download_timeout
    )


def _lookup(
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


def _download_chain(
    cache: Cache,
    key: str,
    urls: Sequence[str],
    settings: Settings,
    sha256: str | None,
    hash_prefix: str | None,
    size: int | None,
    post_check: PostCheck | None = None,
) -> tuple[Path, str]:
    """Try every candidate URL in order; return (blob path, URL that worked)."""
    errors: list[tuple[str, BaseException]] = []
    for url in urls:
        try:
            blob = _download_one(cache, key, url, settings, sha256, hash_prefix, size, post_check)
            return blob, url
        except (DownloadError, IntegrityError) as exc:
            errors.append((url, exc))
    assert errors
    if len(errors) == 1:
        raise errors[0][1]
    detail = "; ".join(f"{u}: {e}" for u, e in errors)
    message = f"every URL failed for {urls[0]} ({len(errors)} tried): {detail}"
    integrity = [e for _, e in errors if isinstance(e, IntegrityError)]
    if integrity:  # some server answered with wrong bytes: that is the error to report
        raise type(integrity[-1])(message) from integrity[-1]
    not_found = all(isinstance(e, RemoteNotFoundError) for _, e in errors)
    kind = RemoteNotFoundError if not_found else DownloadError
    raise kind(message, url=urls[0]) from errors[-1][1]


def _download_one(
    cache: Cache,
    key: str,
    url: str,
    settings: Settings,
    sha256: str | None,
    hash_prefix: str | None,
    size: int | None,
    post_check: PostCheck | None = None,
) -> Path:
    claimed = cache.claim_partial(key, url)
    if claimed is not None:  # a dead process's partial download of this URL: resume it
        temp, validator = claimed
        writer = HashingWriter(temp, resume=True)
        log.info("%s: resuming a partial download at byte %d", url, writer.size)
    else:
        temp, validator = cache.new_temp(key), None
        writer = HashingWriter(temp)
    bar = _progress_bar(url, settings)
    interrupted = False

    def remember(new_validator: str | None, total: int | None) -> None:
        cache.record_partial(temp, url, new_validator, total)

    try:
        for attempt in (1, 2):
            facts = stream_to(
                url, writer, settings, progress=bar, validator=validator, on_validator=remember
            )
            digest = writer.hexdigest()
            try:
                reject_if_not_weights(writer.head, url)
                check_digest(
                    digest,
                    writer.size,
                    url=url,
                    sha256=sha256,
                    hash_prefix=hash_prefix,
                    expected_size=size,
                )
                if post_check is not None:  # format, git blob sha1: before the rename
                    post_check(temp, writer.head, url)
                break
            except HashMismatchError:
                if attempt == 2 or not (facts["resumed"] or claimed):
                    raise
                # A resumed download that fails the check may have mixed two versions of the
                # file: one clean download from byte 0 decides.
                writer.reset()
                validator = None
        writer.close()
        cache.record_partial(temp, url, None, None)  # drop the resume note
        return cache.publish(temp, digest)
    except (KeyboardInterrupt, SystemExit):
        interrupted = True  # keep the partial: a later call resumes it (it is not an entry)
        raise
    finally:
        if bar is not None:
            bar(0, None, close=True)
        writer.close()
        cache.release_temp(temp)
        if not interrupted:
            cache.record_partial(temp, url, None, None)
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()  # still there only when something failed: unverified, dropped


def _progress_bar(url: str, settings: Settings) -> Callable[..., None] | None:
    """A tqdm bar on stderr when it is a TTY (or OMNIZOO_PROGRESS=1); None when silent."""
    enabled = settings.progress
    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not enabled:
        return None
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def update(n: int, total: int | None, close: bool = False) -> None:
        bar = state.get("bar")
        if close:
            if bar is not None:
                bar.close()
            return
        if bar is None:
            label = url.rsplit("/", 1)[-1][:40]
            bar = state["bar"] = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                file=sys.stderr,
                leave=False,
            )
        bar.update(n)

    return update
