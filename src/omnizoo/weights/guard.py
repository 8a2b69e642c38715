"""The cache guard: a reader/writer lock between ``cache prune`` and code that adds refs.

A blob no ref points at is garbage to ``cache prune``, but it is also what a download has
just published (the ref is written a moment later), and what a request with a known sha256
finds and is about to point a ref at. Two rules keep every caller's path alive:

* whoever writes refs for a blob holds the guard **shared** (``flock(LOCK_SH)``; writers do
  not wait for each other), checks that the blob is still there, then writes the refs;
* prune holds it **exclusive** while it re-reads the refs and deletes, so it either sees the
  new ref (and keeps the blob) or deletes the blob before the writer checks (who then
  downloads it again instead of handing out a dead path).

The guard file is ``locks/cache.guard``; it is never deleted. Where it cannot be created (a
read-only cache: nothing there can be pruned either) or where ``flock`` does not exist
(Windows), the guard is a no-op and prune's age rule (nothing younger than its grace period
is deleted) is what protects fresh files.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import CacheError
from .fsafe import NotRegularFileError, is_readonly_error, open_regular

__all__ = ["GUARD_NAME", "cache_guard"]

GUARD_NAME = "cache.guard"
log = logging.getLogger("omnizoo.weights")
_BUSY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})


def _open_guard(path: Path) -> int | None:
    """A descriptor on the guard file (created if need be), or None where there is none."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)  # O_NOFOLLOW: a planted symlink fails with ELOOP
    except FileNotFoundError:
        return None  # no locks/ directory: a cache that was never written to
    except OSError as exc:
        if not is_readonly_error(exc):
            raise
        try:  # flock works on a read-only descriptor too
            return open_regular(path)
        except OSError:
            return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted under the name
        os.close(fd)
        raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
    return fd


@contextlib.contextmanager
def cache_guard(locks_dir: Path, *, exclusive: bool, timeout: float = 120.0) -> Iterator[bool]:
    """Hold the cache guard (shared or exclusive) for the ``with`` block.

    Yields True when it is held, False where the platform or a read-only cache has none.
    Raises :class:`CacheError` after ``timeout`` seconds of waiting (a stopped prune, say).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield False
        return
    try:
        fd = _open_guard(locks_dir / GUARD_NAME)
    except OSError as exc:
        raise CacheError(f"cannot use the cache guard {locks_dir / GUARD_NAME}: {exc}") from exc
    if fd is None:
        yield False
        return
    try:
        held = _acquire(fd, exclusive, timeout, locks_dir / GUARD_NAME)
        try:
            yield held
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, exclusive: bool, timeout: float, path: Path) -> bool:
    """flock ``fd``, polling until ``timeout``; False where the filesystem has no flock."""
    import fcntl

    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.ENOLCK):
                return False  # no flock on this filesystem: the age rule protects
            if exc.errno not in _BUSY:
                raise
        if time.monotonic() > deadline:
            what = "downloads writing refs" if exclusive else "`omnizoo cache prune`"
            raise CacheError(
                f"the weights cache guard {path} is held by {what} and was not released "
                f"within {timeout:.0f}s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
