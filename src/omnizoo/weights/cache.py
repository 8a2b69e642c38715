"""The on-disk layout of the content-addressed weights cache, its locks and its maintenance.

::

    $OMNIZOO_HOME/weights/
      blobs/sha256/<hex>      verified bytes, named by their sha256; written once, by rename
      meta/<hex>.json         {"sha256", "size", "mtime_ns"} of the blob when it was verified
      refs/<key>.json         one per URL: {"url", "sha256", "filename", "names",
                              "verification", "revision", ...}; key = sha256(url)[:32].
                              Many refs may point at one blob.
      tmp/<key>.<host>.<pid>.<rand>.part   per-process partial downloads
      locks/<key>.lock        filelock files (coordination only; never needed for correctness)

A blob is only ever created by ``os.replace`` of a temp file whose bytes were verified, so a
reader sees either nothing or a complete verified file. A cache hit reads the ref and meta
JSON and stats the blob: when size and mtime match the recorded ones the blob is served
without re-hashing; otherwise it is re-hashed once (and deleted if it no longer matches).

Every entry may have been planted by someone else (a shared or copied cache): a ref's
``sha256`` is used only when it is 64 hex digits, and no file inside the cache is opened,
hashed, chmod-ed or deleted through a symlink (:mod:`omnizoo.weights.fsafe`). A read-only
cache serves what it holds: metadata that cannot be written there is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import CacheError
from . import fsafe
from .guard import cache_guard
from .maintenance import BlobInfo, CacheMaintenance
from .partials import CachePartials
from .records import clean_ref, read_json, size_of, write_json
from .records import is_digest as _is_digest

__all__ = ["BlobInfo", "Cache", "url_key"]

log = logging.getLogger("omnizoo.weights")


def url_key(url: str) -> str:
    """The stable file-name key of a URL (refs, locks, temp files)."""
    import hashlib

    # surrogatepass: a URL with a lone surrogate still gets a key (and then fails as a URL)
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Cache(CachePartials, CacheMaintenance):
    """The weights cache under ``root`` (``settings.weights_dir``)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.meta = self.root / "meta"
        self.refs = self.root / "refs"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"

    def prune(self, *, dry_run: bool = False, grace: float | None = None) -> dict[str, list[str]]:
        """Delete leftovers: dead partial downloads, stray temp files, refs whose blob is gone,
        meta without a blob, blobs no ref points at, and unused lock files; nothing younger
        than ``grace`` seconds (default an hour) and nothing a live download needs. See
        :mod:`omnizoo.weights.prune`."""
        from .prune import DEFAULT_GRACE_S, prune_cache  # only `cache prune` needs it

        grace = DEFAULT_GRACE_S if grace is None else grace
        return prune_cache(self, dry_run=dry_run, grace=grace)

    def ensure(self) -> None:
        """Create the directories (writable check included)."""
        try:
            for d in (self.blobs, self.meta, self.refs, self.tmp, self.locks):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create the weights cache under {self.root}: {exc}; "
                "set OMNIZOO_HOME to a writable directory"
            ) from exc

    # -- paths -----------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        return self.blobs / _checked_digest(sha256)

    def _meta_path(self, sha256: str) -> Path:
        return self.meta / f"{_checked_digest(sha256)}.json"

    def _ref_path(self, url: str) -> Path:
        return self.refs / f"{url_key(url)}.json"

    # -- reads -----------------------------------------------------------------------------
    def ref(self, url: str) -> dict[str, Any] | None:
        """The ref recorded for ``url`` (or None). A malformed one (a ``sha256`` that is not
        64 hex digits, such as ``../../x``) is ignored and deleted, with a warning."""
        path = self._ref_path(url)
        data = read_json(path)
        if data is None or data.get("url") != url:
            return None
        clean = clean_ref(data)
        if clean is None:
            log.warning("ignoring malformed cache ref %s (sha256 %r)", path, data.get("sha256"))
            with contextlib.suppress(OSError):  # a read-only cache keeps it; it stays ignored
                fsafe.remove(path)
        return clean

    def valid_blob(self, sha256: str) -> Path | None:
        """The blob's path if present and intact. Costs a stat (+ a tiny JSON read) when the
        recorded size/mtime match; a changed file is re-hashed once, a corrupt one deleted."""
        path = self.blob_path(sha256)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):  # a planted symlink/FIFO: never followed or served
            log.warning("cache entry %s is not a regular file; removing the entry", path)
            self._delete_blob(sha256)
            return None
        meta = read_json(self._meta_path(sha256))
        if meta and meta.get("size") == st.st_size and meta.get("mtime_ns") == st.st_mtime_ns:
            return path
        try:
            actual, size = fsafe.hash_regular(path)
        except FileNotFoundError:
            return None
        if actual == sha256:
            # Hashed through a descriptor: the entry itself may have gone meanwhile (`cache
            # prune`), and a dead path is no hit.
            now = fsafe.lstat_regular(path)
            if now is None:
                return None
            self._record_meta(sha256, path, now)
            return path
        log.warning(
            "cached blob %s is corrupted (its sha256 is now %s, %d bytes); deleting it",
            path,
            actual,
            size,
        )
        self._delete_blob(sha256)
        return None

    # -- writes ----------------------------------------------------------------------------
    def _record_meta(self, sha256: str, path: Path, st: os.stat_result | None = None) -> None:
        """Record the blob's size/mtime; skipped (not an error) on a read-only cache."""
        st = st or fsafe.lstat_regular(path)
        if st is None:
            return
        try:
            write_json(
                self._meta_path(sha256),
                {
                    "sha256": sha256,
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "verified": time.time(),
                },
            )
        except OSError as exc:
            if not fsafe.is_readonly_error(exc):
                raise
            log.debug("read-only cache: not recording the meta of %s (%s)", path, exc)

    def publish(self, temp: Path, sha256: str) -> Path:
        """Move verified bytes into place (atomic rename) and record their size/mtime."""
        self.ensure()
        target = self.blob_path(sha256)
        if self.valid_blob(sha256) is not None:
            fsafe.remove(temp)  # the same bytes are already there
            return target
        fd = fsafe.open_regular(temp)  # the temp file itself, never a planted link's target
        try:
            # Blobs are immutable (a later write is a corruption): the write bits go, the read
            # bits the umask gave the file stay, so a group-shared cache stays readable.
            fsafe.make_readonly(fd)
            # The meta first (a rename keeps size and mtime), so that a reader who sees the
            # blob always finds its meta and never re-hashes a file that was just verified.
            self._record_meta(sha256, temp, os.fstat(fd))
        finally:
            os.close(fd)
        os.replace(temp, target)
        return target

    def add_ref(
        self,
        url: str,
        sha256: str,
        *,
        name: str | None = None,
        fetched_from: str | None = None,
        verification: str | None = None,
        revision: str | None = None,
        git_sha1: str | None = None,
    ) -> None:
        """Point ``url`` (and optionally a model name) at a blob.

        ``verification`` is how the bytes were checked (see :mod:`.verification`), with the Hub
        ``revision`` (commit) and ``git_sha1`` they were checked against; a value not given is
        kept from the ref's previous record of the same blob.
        """
        _checked_digest(sha256)
        self.ensure()
        path = self._ref_path(url)
        old = clean_ref(read_json(path) or {}) or {}
        same_blob = old.get("sha256") == sha256
        names = [n for n in old.get("names", []) if isinstance(n, str)] if same_blob else []
        if name and name not in names:
            names.append(name)
        filename = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        record: dict[str, Any] = {
            "url": url,
            "sha256": sha256,
            "filename": filename,
            "names": names,
            "fetched_from": fetched_from or old.get("fetched_from") or url,
            "created": old.get("created") or time.time(),
        }
        # How the bytes were verified: a record kept per URL (what `cache list` shows).
        for key, value in (
            ("verification", verification),
            ("revision", revision),
            ("git_sha1", git_sha1),
        ):
            if value is None and same_blob:
                value = old.get(key)
            if value is not None:
                record[key] = value
        write_json(path, record)

    def _delete_blob(self, sha256: str) -> None:
        # Unlinking needs no write permission on the file itself, so there is no chmod that
        # could reach a planted symlink's target.
        for path in (self.blob_path(sha256), self._meta_path(sha256)):
            try:
                fsafe.remove(path)
            except OSError as exc:
                if not fsafe.is_readonly_error(exc):
                    raise
                log.debug("read-only cache: cannot delete %s (%s)", path, exc)

    def guard(self, *, exclusive: bool = False) -> contextlib.AbstractContextManager[bool]:
        """The cache guard (:mod:`omnizoo.weights.guard`): held shared while refs are added
        for a blob, exclusive by ``prune`` while it deletes."""
        return cache_guard(self.locks, exclusive=exclusive)

    # -- locks -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(
        self,
        key: str,
        *,
        ready: Callable[[], Path | None],
        stall_timeout: float,
        poll: float = 0.1,
    ) -> Iterator[Path | None]:
        """Hold the download lock for ``key``, or yield the finished file if another process
        produced it while we waited (then no lock is held).

        A waiter never blocks forever: a lock whose holder died is released by the OS (flock),
        and a holder whose partial download has not grown for ``stall_timeout`` seconds is
        ignored (we then download too, into our own temp file; the atomic rename of verified
        bytes keeps that correct). Filesystems without flock fall back to a lock file.
        """
        import filelock

        self.ensure()
        path = self.locks / f"{key}.lock"
        # drops a planted symlink first (older filelock versions follow it)
        mode = fsafe.lock_file_mode(path)
        lock: filelock.BaseFileLock = filelock.FileLock(str(path), mode=mode)
        marker: object = None
        last_change = time.monotonic()
        held = False
        while True:
            try:
                lock.acquire(timeout=poll, poll_interval=min(poll, 0.05))
                held = True
                break
            except filelock.Timeout:
                pass
            except NotImplementedError:  # no flock here (some network filesystems)
                lock = filelock.SoftFileLock(str(path) + ".soft")
                continue
            found = ready()
            if found is not None:
                yield found
                return
            now = time.monotonic()
            current = [(t.name, size_of(t)) for t in self.temps(key)]
            if current != marker:
                marker, last_change = current, now
            elif now - last_change > stall_timeout:
                log.warning(
                    "the download lock %s has shown no progress for %.0fs; downloading anyway",
                    path,
                    now - last_change,
                )
                if isinstance(lock, filelock.SoftFileLock):
                    with contextlib.suppress(FileNotFoundError):
                        Path(lock.lock_file).unlink()
                break
        try:
            yield None
        finally:
            if held:
                lock.release()


def _checked_digest(sha256: str) -> str:
    """``sha256`` when it is 64 lower-case hex digits; a path made of anything else could
    point outside the cache (``../../x``) or at a directory (``""``, ``"."``)."""
    if not _is_digest(sha256):
        raise CacheError(f"not a sha256 digest, refusing to use it as a cache path: {sha256!r}")
    return sha256
