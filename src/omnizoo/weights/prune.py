"""``omnizoo cache prune``: delete what nothing needs any more, safely beside live downloads.

What is deleted, and the rule that keeps each live thing alive:

* **partial downloads** (``tmp/*.part`` and their ``.part.json``) and **stray JSON temp files**
  (``.*.tmp`` in refs/, meta/, blobs/, tmp/) whose owner is dead: the file name records host and
  PID, and a process of this host is asked whether it still runs; files of another host (a
  cache on a network filesystem) are left alone for a day;
* **blobs no ref points at**, **refs whose blob is gone**, **metas without a referenced blob**,
  and **non-files planted in blobs/** (the entry is unlinked; a symlink's target is never
  touched): only when older than the grace period (``grace``, default an hour, at least a
  minute: a download publishes its blob a moment before it writes the ref), and only while the
  cache guard is held exclusively (:mod:`omnizoo.weights.guard`): refs are re-read under it,
  and every code path that adds a ref holds it shared and checks that the blob still exists;
* **unused lock files** older than the grace period: each is taken (non-blocking) before it
  is unlinked, so a lock somebody holds or waits for is kept.

Nothing here raises for a file it cannot delete (a read-only cache, a file of another user):
such files are listed under ``"errors"`` in the report.
"""

from __future__ import annotations

import math
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from . import fsafe

if TYPE_CHECKING:
    from .maintenance import CacheMaintenance

from .processes import STALE_FOREIGN_TEMP_S, partial_info, pid_alive
from .records import clean_ref, is_digest, read_json

__all__ = ["DEFAULT_GRACE_S", "MIN_GRACE_S", "prune_cache"]

DEFAULT_GRACE_S = 3600.0
MIN_GRACE_S = 60.0
KINDS = ("partial", "refs", "meta", "blobs", "locks")


def prune_cache(
    cache: CacheMaintenance, *, dry_run: bool = False, grace: float = DEFAULT_GRACE_S
) -> dict[str, list[str]]:
    """Delete leftovers (see the module docstring); returns ``{kind: [paths]}`` of what was
    deleted (or would be, with ``dry_run``), plus ``"errors"``: ``"path: reason"`` lines."""
    if not (math.isfinite(grace) and grace >= MIN_GRACE_S):
        raise ConfigurationError(
            f"prune grace={grace!r} seconds: must be a finite number >= {MIN_GRACE_S:.0f} "
            "(a download publishes its file a moment before it records the URL)"
        )
    run = _Run(cache, dry_run=dry_run, grace=grace)
    run.partials()
    if dry_run:
        run.entries()
    else:
        with cache.guard(exclusive=True):
            run.entries()
    run.locks()
    return {**run.report, "errors": run.errors}


class _Run:
    """One prune pass: the report, the clock and the deletions."""

    def __init__(self, cache: CacheMaintenance, *, dry_run: bool, grace: float) -> None:
        self.cache = cache
        self.dry_run = dry_run
        self.grace = grace
        self.now = time.time()
        self.report: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self.errors: list[str] = []

    def old(self, path: Path) -> bool:
        """Last modified at least ``grace`` seconds ago (False when missing)."""
        try:
            return self.now - os.lstat(path).st_mtime >= self.grace
        except (FileNotFoundError, NotADirectoryError):
            return False

    def delete(self, kind: str, path: Path) -> None:
        if not self.dry_run:
            try:
                if not fsafe.remove(path):
                    return  # already gone (someone else cleaned it)
            except OSError as exc:
                self.errors.append(f"{path}: {exc.strerror or exc}")
                return
        self.report[kind].append(str(path))

    # -- temp files: judged by their owner --------------------------------------------------
    def partials(self) -> None:

        cache = self.cache
        doomed = [t for t in cache.temps() if cache.is_leftover(t)]
        for d in (cache.refs, cache.meta, cache.blobs, cache.tmp):
            if d.is_dir():
                doomed.extend(p for p in sorted(d.glob(".*.tmp")) if self._dead_temp(p))
        if cache.tmp.is_dir():
            for info in sorted(cache.tmp.glob("*.part.json")):
                part = info.with_name(info.name[: -len(".json")])
                gone = not os.path.lexists(part) and self.old(info)
                if (part in doomed or gone) and info not in doomed:
                    doomed.append(info)
        for temp in doomed:
            if temp.name.endswith(".part"):
                info = partial_info(temp)
                if info not in doomed and os.path.lexists(info):
                    self.delete("partial", info)
            self.delete("partial", temp)

    def _dead_temp(self, path: Path) -> bool:
        """A :func:`~omnizoo.weights.fsafe.write_atomic` temp file nobody is writing."""

        owner = fsafe.temp_owner(path.name)
        if owner is not None and owner[0] == fsafe.HOST:
            if owner[1] == os.getpid():
                return self.old(path)  # ours: another thread may be writing it right now
            return not pid_alive(owner[1])
        try:  # another host's (or an unknown name): only when surely abandoned
            age = self.now - os.lstat(path).st_mtime
        except FileNotFoundError:
            return False
        return age >= max(self.grace, STALE_FOREIGN_TEMP_S)

    # -- blobs, refs, metas: judged under the exclusive cache guard ---------------------------
    def entries(self) -> None:
        cache = self.cache
        shas: set[str] = set()
        if cache.blobs.is_dir():
            for entry in sorted(cache.blobs.iterdir()):
                try:
                    mode = os.lstat(entry).st_mode
                except FileNotFoundError:
                    continue
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    continue  # a temp file: judged by its owner above
                if stat.S_ISREG(mode) and is_digest(entry.name):
                    shas.add(entry.name)
                elif not stat.S_ISDIR(mode) and self.old(entry):
                    self.delete("blobs", entry)  # a planted link/FIFO: unlinked, never followed
        refs = self._refs()
        referenced = {ref["sha256"] for ref in refs if ref["sha256"] in shas}
        for ref in refs:
            if ref["sha256"] not in shas and self.old(Path(ref["_path"])):
                self.delete("refs", Path(ref["_path"]))
        unused = sorted(sha for sha in shas - referenced if self.old(cache.blob_path(sha)))
        for sha in unused:
            self.delete("blobs", cache.blob_path(sha))
        if cache.meta.is_dir():
            for meta in sorted(cache.meta.glob("*.json")):
                sha = meta.name[: -len(".json")]
                if sha in unused or (sha not in referenced and self.old(meta)):
                    self.delete("meta", meta)

    def _refs(self) -> list[dict[str, Any]]:
        """Every ref file read afresh; a malformed one (not usable as a ref) is deleted."""
        out: list[dict[str, Any]] = []
        if not self.cache.refs.is_dir():
            return out
        for path in sorted(self.cache.refs.glob("*.json")):
            data = read_json(path)
            clean = clean_ref(data) if data is not None else None
            if clean is None:
                if os.path.lexists(path) and (data is not None or self.old(path)):
                    self.delete("refs", path)
                continue
            clean["_path"] = str(path)
            out.append(clean)
        return out

    # -- lock files: taken before they are unlinked ----------------------------------------
    def locks(self) -> None:
        import filelock

        cache = self.cache
        if not cache.locks.is_dir():
            return
        busy = {t.name.split(".", 1)[0] for t in cache.temps() if not cache.is_leftover(t)}
        for path in sorted(cache.locks.glob("*.lock")):
            if path.stem in busy or not self.old(path):
                continue
            st = fsafe.lstat_regular(path)
            if st is None:
                self.delete("locks", path)  # a planted link: unlinked, never opened
                continue
            if self.dry_run:
                self.report["locks"].append(str(path))
                continue
            # its own mode: filelock 3.13 would chmod it to 0o644 (fsafe.lock_file_mode)
            lock = filelock.FileLock(str(path), timeout=0, mode=stat.S_IMODE(st.st_mode))
            try:
                lock.acquire()
            except (filelock.Timeout, OSError, NotImplementedError):
                continue  # held or waited for (or not ours to take): kept
            try:
                self.delete("locks", path)  # while held, so no waiter is left on a dead inode
            finally:
                lock.release()
