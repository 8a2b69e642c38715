"""Partial downloads in the weights cache (``tmp/<key>.<host>.<pid>.<rand>.part``): this
process's temp files, leftovers of dead processes, and resuming one safely.

A temp file is this process's while a download writes it (:meth:`CachePartials.new_temp` until
:meth:`CachePartials.release_temp`); one whose process is gone (or, from another host, idle
for ``STALE_FOREIGN_TEMP_S``) is a leftover: it is deleted, or adopted by an atomic rename
when its recorded validator lets a ``Range`` + ``If-Range`` request resume it. A planted
symlink is never adopted.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

from . import fsafe
from .fsafe import HOST as _HOST
from .processes import STALE_FOREIGN_TEMP_S, partial_info, pid_alive
from .records import read_json, size_of, write_json

__all__ = ["ACTIVE_TEMPS", "CachePartials"]

# Names of the temp files this process is writing right now (its other temp files, e.g. kept
# after a KeyboardInterrupt, are leftovers it may resume).
ACTIVE_TEMPS: set[str] = set()


class CachePartials:
    """The temp-file half of :class:`omnizoo.weights.cache.Cache` (a mixin: ``tmp`` is the
    cache's temp folder)."""

    tmp: Path

    def new_temp(self, key: str) -> Path:
        """A fresh per-process temp path for a download of ``key`` (beside the blobs); it
        counts as in use until :meth:`release_temp`."""
        path = self.tmp / f"{key}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
        ACTIVE_TEMPS.add(path.name)
        return path

    @staticmethod
    def release_temp(path: Path) -> None:
        """This process no longer writes ``path``."""
        ACTIVE_TEMPS.discard(path.name)

    # -- temp files --------------------------------------------------------------
    def temps(self, key: str | None = None) -> list[Path]:
        """Partial downloads (all, or for one key)."""
        if not self.tmp.is_dir():
            return []
        pattern = f"{key}.*.part" if key else "*.part"
        return sorted(self.tmp.glob(pattern))

    def is_leftover(self, temp: Path) -> bool:
        """Whether a temp file belongs to no running download (dead process, or old)."""
        parts = temp.name.split(".")
        try:
            host, pid = parts[1], int(parts[2])
        except (IndexError, ValueError):
            return True
        if host == _HOST:
            if pid == os.getpid():  # ours: a leftover unless a download is writing it now
                return temp.name not in ACTIVE_TEMPS
            return not pid_alive(pid)
        try:
            return time.time() - os.lstat(temp).st_mtime > STALE_FOREIGN_TEMP_S
        except FileNotFoundError:
            return False

    def clean_leftovers(self, key: str | None = None) -> list[Path]:
        """Delete partial downloads no live process owns; returns what was deleted."""
        removed = []
        for temp in self.temps(key):
            if self.is_leftover(temp):
                partial_info(temp).unlink(missing_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
                    removed.append(temp)
        return removed

    def record_partial(
        self, temp: Path, url: str, validator: str | None, total: int | None
    ) -> None:
        """Note next to a partial download where its bytes came from (for a later resume)."""
        info = partial_info(temp)
        if validator is None:
            info.unlink(missing_ok=True)  # without a validator a resume cannot be trusted
            return
        write_json(info, {"url": url, "validator": validator, "total": total})

    def claim_partial(self, key: str, url: str) -> tuple[Path, str] | None:
        """Adopt a dead process's partial download of ``url`` (atomically renamed to a temp
        path of ours). Returns ``(temp, validator)``; only partials with a recorded ETag or
        Last-Modified qualify, so the resume request can carry ``If-Range``."""
        best: tuple[int, Path, dict[str, Any]] | None = None
        for temp in self.temps(key):
            if not self.is_leftover(temp):
                continue
            if fsafe.lstat_regular(temp) is None:  # a planted symlink: never adopted
                with contextlib.suppress(OSError):
                    fsafe.remove(temp)
                continue
            info = read_json(partial_info(temp))
            if not info or info.get("url") != url or not isinstance(info.get("validator"), str):
                continue
            size = size_of(temp)
            if size > 0 and (best is None or size > best[0]):
                best = (size, temp, info)
        if best is None:
            return None
        _, temp, info = best
        mine = self.new_temp(key)
        try:
            os.rename(temp, mine)  # atomic: of two claimants, one wins
        except FileNotFoundError:
            return None
        if fsafe.lstat_regular(mine) is None:  # swapped for a link between check and rename
            fsafe.remove(mine)
            self.release_temp(mine)
            return None
        partial_info(temp).unlink(missing_ok=True)
        self.record_partial(mine, url, info["validator"], info.get("total"))
        return mine, str(info["validator"])
