"""The download itself: a chain of candidate URLs tried in order, each streamed into a temp
file that is hashed as it is written, resumed from a dead process's partial when there is one,
checked (sniff, sha256 or hash prefix, size, then the caller's ``post_check``) and only then
renamed into the cache as a blob.

:func:`download_chain` is called by :func:`omnizoo.weights.download`'s chain under the cache
lock of the file; :func:`stall_timeout` is how long a waiter on that lock tolerates a holder
whose partial file does not grow.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DownloadError, HashMismatchError, IntegrityError, RemoteNotFoundError
from ..settings import Settings
from .cache import Cache
from .hashing import HashingWriter, check_digest, reject_if_not_weights
from .progress_bar import bar_wanted, make_bar
from .transport import stream_to

log = logging.getLogger("omnizoo.weights")

__all__ = ["PostCheck", "download_chain", "stall_timeout"]

#: A check run on a finished download before it is published: (temp file, first bytes, URL).
PostCheck = Callable[[Path, bytes, str], None]


def stall_timeout(settings: Settings) -> float:
    """How long a waiter tolerates a lock holder whose partial file does not grow: one
    attempt's timeouts plus the longest back-off, and never more than the total deadline."""
    backoff = settings.backoff * 2 ** min(settings.retries, 16)
    return min(
        settings.read_timeout + settings.connect_timeout + backoff, settings.download_timeout
    )


def download_chain(
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
    """A ``tqdm.auto`` bar on stderr when it is a terminal or a Jupyter kernel's (or
    OMNIZOO_PROGRESS=1; see :mod:`.progress_bar`); None when silent."""
    if not bar_wanted(sys.stderr, settings.progress):
        return None
    state: dict[str, Any] = {}

    def update(n: int, total: int | None, close: bool = False) -> None:
        bar = state.get("bar")
        if close:
            if bar is not None:
                bar.close()
            return
        if bar is None:
            label = url.rsplit("/", 1)[-1][:40]
            bar = state["bar"] = make_bar(
                sys.stderr,
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                leave=False,
            )
        bar.update(n)

    return update
