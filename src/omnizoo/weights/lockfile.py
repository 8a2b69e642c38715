"""Weights lock files: pin every file a project uses, like pip's hash-checking mode.

::

    $ omnizoo lock timm:resnet18.a1_in1k torchvision:resnet50 -o omnizoo.lock
    $ export OMNIZOO_LOCK=$PWD/omnizoo.lock     # or download_weights(..., lock=path)

``omnizoo lock`` resolves each name (card -> URL(s); for a Hugging Face file the commit its
revision points at), downloads and verifies the file where it is not cached yet, and writes
one entry per file::

    {"omnizoo_lock": 1,
     "files": [{"name": "timm:resnet18.a1_in1k",
                "urls": ["https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors",
                         "https://huggingface.co/timm/resnet18.a1_in1k/resolve/<commit>/model.safetensors"],
                "revision": "<commit>", "sha256": "<64 hex>", "size": 46827520,
                "format": "safetensors", "source": "origin"}]}

``source`` says how the digest was established when the lock was made (``pinned``, ``origin``,
``prefix``, or ``unverified``: trusted on first use, fetched from the origin only).

With a lock in force every request must match it:

* a model name must be listed (with one of the request's URLs); a URL must be listed, unless
  the caller gives its own full ``sha256=`` (the caller pinned it, as ``--hash`` does in a pip
  requirements file). Anything else raises :class:`NotInLockError`, saying how to add it;
* the bytes (downloaded or cached) must have the listed sha256 and size, else
  :class:`HashMismatchError` naming both digests; a Hugging Face file is fetched at the
  listed commit, and needs no request to the origin (air-gapped mirrors work);
* files served this way are ``pinned``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, HashMismatchError, LockFileError, NotInLockError
from ..settings import Settings
from .verification import PINNED, STATES, Expected, Fetched

__all__ = ["LOCK_VERSION", "LockEntry", "WeightsLock", "active_lock", "load_lock", "lock_entry"]

LOCK_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_cache_lock = threading.Lock()
_loaded: dict[Path, tuple[tuple[int, int], WeightsLock]] = {}


@dataclass(frozen=True)
class LockEntry:
    """One pinned file."""

    urls: tuple[str, ...]
    sha256: str
    size: int
    name: str | None = None
    revision: str | None = None
    format: str | None = None
    source: str = PINNED

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "urls": list(self.urls),
            "revision": self.revision,
            "sha256": self.sha256,
            "size": self.size,
            "format": self.format,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> LockEntry:
        """Parse and check one entry; :class:`LockFileError` names what is wrong."""
        if not isinstance(data, Mapping):
            raise LockFileError(f"{where}: an entry must be a JSON object, got {data!r}")
        urls = data.get("urls")
        if (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(u, str) and "://" in u for u in urls)
        ):
            raise LockFileError(f"{where}: 'urls' must be a non-empty list of URLs")
        sha = data.get("sha256")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise LockFileError(f"{where}: 'sha256' must be 64 lower-case hex digits, got {sha!r}")
        size = data.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise LockFileError(f"{where}: 'size' must be an integer >= 0, got {size!r}")
        name = data.get("name")
        revision = data.get("revision")
        fmt = data.get("format")
        source = data.get("source", PINNED)
        if name is not None and (not isinstance(name, str) or not name):
            raise LockFileError(f"{where}: 'name' must be a model name or null, got {name!r}")
        if revision is not None and (not isinstance(revision, str) or not _COMMIT.match(revision)):
            raise LockFileError(f"{where}: 'revision' must be a 40-hex commit or null")
        if fmt is not None and not isinstance(fmt, str):
            raise LockFileError(f"{where}: 'format' must be a string or null, got {fmt!r}")
        if source not in STATES:
            raise LockFileError(f"{where}: 'source' must be one of {', '.join(STATES)}")
        return cls(tuple(urls), sha, size, name, revision, fmt, source)


@dataclass(frozen=True)
class WeightsLock:
    """A parsed lock file (``path`` None: built in memory)."""

    entries: tuple[LockEntry, ...] = ()
    path: Path | None = None

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else "the lock given"

    def find(self, name: str | None, urls: Sequence[str]) -> LockEntry | None:
        """The entry for a request: by name (with a shared URL), else by URL."""
        wanted = set(urls)
        if name is not None:
            named = [e for e in self.entries if e.name == name]
            for entry in named:
                if wanted & set(entry.urls):
                    return entry
            if named:
                raise NotInLockError(
                    f"{name} is in the lock file {self.label}, but for {named[0].urls[0]}, not "
                    f"{urls[0]} (a pretrained_cfg or card change?); re-lock it with "
                    f"`omnizoo lock {name} --update -o {self.label}`"
                )
        for entry in self.entries:
            if wanted & set(entry.urls):
                return entry
        return None

    def expect(
        self, want: Expected, *, name: str | None, urls: Sequence[str], caller_sha256: bool
    ) -> Expected:
        """What a request must match under this lock (raises when it is not listed)."""
        entry = self.find(name, urls)
        if entry is None:
            if name is None and caller_sha256:
                return want  # a URL the caller pinned with its own sha256
            what = name or urls[0]
            raise NotInLockError(
                f"{what} is not in the lock file {self.label}, and a lock refuses what it does "
                f"not list; add it with `omnizoo lock {what} --update -o {self.label}` (or "
                "re-run `omnizoo lock` with every name), or unset OMNIZOO_LOCK"
            )
        if want.sha256 is not None and want.sha256 != entry.sha256:
            raise HashMismatchError(
                f"{name or urls[0]}: the lock file {self.label} pins sha256 {entry.sha256}, the "
                f"request expects {want.sha256}; re-lock it with `omnizoo lock "
                f"{name or urls[0]} --update -o {self.label}` if the new file is intended"
            )
        if want.size is not None and want.size != entry.size:
            raise HashMismatchError(
                f"{name or urls[0]}: the lock file {self.label} pins {entry.size} bytes, the "
                f"card says {want.size}"
            )
        return Expected(
            sha256=entry.sha256,
            size=entry.size,
            state=PINNED,
            revision=entry.revision or want.revision,
        )

    def merged(self, new: Iterable[LockEntry]) -> WeightsLock:
        """This lock with ``new`` entries added; an entry with the same name (or, unnamed,
        a shared URL) is replaced."""
        new = list(new)
        kept = []
        for old in self.entries:
            replaced = any(
                (old.name is not None and old.name == e.name)
                or (old.name is None and e.name is None and set(old.urls) & set(e.urls))
                for e in new
            )
            if not replaced:
                kept.append(old)
        ordered = sorted([*kept, *new], key=lambda e: (e.name is None, e.name or "", e.urls[0]))
        return replace(self, entries=tuple(ordered))

    def to_json(self) -> dict[str, Any]:
        return {"omnizoo_lock": LOCK_VERSION, "files": [e.to_json() for e in self.entries]}

    def save(self, path: str | Path) -> Path:
        """Write the lock file atomically (temp file + rename); returns its path."""
        path = Path(path).expanduser()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.to_json(), f, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LockFileError(f"cannot write the lock file {path}: {exc}") from exc
        return path


def load_lock(path: str | Path) -> WeightsLock:
    """Read and check a lock file (re-read only when its size or mtime changes)."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
        if not path.is_file():
            raise LockFileError(f"the lock file {path} is not a regular file")
    except OSError as exc:
        raise LockFileError(
            f"cannot read the lock file {path}: {exc.strerror or exc}; create it with "
            f"`omnizoo lock NAME... -o {path}`"
        ) from None
    stamp = (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _loaded.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    from ..schema import MAX_METADATA_BYTES, parse_json
    from .fsafe import read_input

    try:  # the one safe opener: a regular file, size-capped
        data = parse_json(read_input(path, MAX_METADATA_BYTES), str(path))
    except (OSError, ValueError) as exc:
        raise LockFileError(f"the lock file {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("omnizoo_lock") != LOCK_VERSION:
        raise LockFileError(
            f"{path} is not an omnizoo lock file (version {LOCK_VERSION}); write one with "
            "`omnizoo lock NAME... -o FILE`"
        )
    files = data.get("files")
    if not isinstance(files, list):
        raise LockFileError(f"{path}: 'files' must be a list")
    entries = tuple(LockEntry.from_json(e, f"{path}: files[{i}]") for i, e in enumerate(files))
    lock = WeightsLock(entries=entries, path=path)
    with _cache_lock:
        _loaded[path] = (stamp, lock)
    return lock


def active_lock(
    lock: str | Path | WeightsLock | bool | None, settings: Settings
) -> WeightsLock | None:
    """The lock in force: ``lock`` when given (False: none), else OMNIZOO_LOCK."""
    if lock is False:
        return None
    if isinstance(lock, WeightsLock):
        return lock
    if lock is None or lock is True:
        if lock is True and settings.lock is None:
            raise ConfigurationError("lock=True needs OMNIZOO_LOCK to name a lock file")
        return load_lock(settings.lock) if settings.lock is not None else None
    return load_lock(lock)


def lock_entry(fetched: Fetched, name: str | None, fmt: str | None) -> LockEntry:
    return LockEntry(
        urls=fetched.urls,
        sha256=fetched.sha256,
        size=fetched.size,
        name=name,
        revision=fetched.revision,
        format=fmt,
        source=fetched.verification,
    )
