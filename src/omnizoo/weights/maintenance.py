"""Maintenance of the weights cache: list, verify, remove, prune, info.

A mixin of :class:`omnizoo.weights.cache.Cache` (the layout is documented there and in
docs/cache.md); kept apart so that the download path stays small.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fsafe
from .records import clean_ref, is_digest, read_json, size_of
from .verification import STATES, state_of

__all__ = ["BlobInfo", "CacheMaintenance"]


@dataclass
class BlobInfo:
    """One cached blob with the refs that point at it."""

    sha256: str
    path: Path
    size: int
    urls: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    filenames: list[str] = field(default_factory=list)
    #: Per URL (same order as ``urls``): how its bytes were verified, and the Hub commit.
    verifications: list[str] = field(default_factory=list)
    revisions: list[str | None] = field(default_factory=list)

    @property
    def verification(self) -> str:
        """The strongest verification any ref records for these bytes."""
        from .verification import strongest

        return strongest(*self.verifications)


class CacheMaintenance:
    """list / verify / remove / prune / info over a :class:`~omnizoo.weights.cache.Cache`."""

    root: Path
    blobs: Path
    meta: Path
    refs: Path
    tmp: Path
    locks: Path

    # Provided by Cache.
    def blob_path(self, sha256: str) -> Path:
        raise NotImplementedError

    def _meta_path(self, sha256: str) -> Path:
        raise NotImplementedError

    def _record_meta(self, sha256: str, path: Path) -> None:
        raise NotImplementedError

    def _delete_blob(self, sha256: str) -> None:
        raise NotImplementedError

    def temps(self, key: str | None = None) -> list[Path]:
        raise NotImplementedError

    def is_leftover(self, temp: Path) -> bool:
        raise NotImplementedError

    def guard(self, *, exclusive: bool = False) -> contextlib.AbstractContextManager[bool]:
        raise NotImplementedError

    def all_refs(self) -> list[dict[str, Any]]:
        """Every well-formed ref (see :func:`clean_ref`), with its file as ``_path``."""
        out = []
        if self.refs.is_dir():
            for path in sorted(self.refs.glob("*.json")):
                data = read_json(path)
                clean = clean_ref(data) if data else None
                if clean is not None:
                    clean["_path"] = str(path)
                    out.append(clean)
        return out

    def blobs_info(self) -> list[BlobInfo]:
        """Every blob with the URLs/names that point at it, sorted by first name/url.
        Only regular files named by a digest count (a planted symlink is not a blob)."""
        by_sha: dict[str, BlobInfo] = {}
        if self.blobs.is_dir():
            for path in self.blobs.iterdir():
                st = fsafe.lstat_regular(path) if is_digest(path.name) else None
                if st is not None:
                    by_sha[path.name] = BlobInfo(path.name, path, st.st_size)
        for ref in self.all_refs():
            info = by_sha.get(ref["sha256"])
            if info is None:
                continue
            info.urls.append(ref["url"])
            info.filenames.append(ref.get("filename", ""))
            info.verifications.append(state_of(ref))
            revision = ref.get("revision")
            info.revisions.append(revision if isinstance(revision, str) else None)
            info.names.extend(n for n in ref.get("names", []) if n not in info.names)
        return sorted(by_sha.values(), key=lambda b: (b.names or b.urls or [b.sha256])[0])

    def verify(
        self, progress: Callable[[BlobInfo], None] | None = None
    ) -> list[tuple[BlobInfo, str]]:
        """Re-hash every blob. Returns ``(blob, actual sha256)`` for each corrupted one (they
        are left in place for the caller to report; ``remove`` or a download replaces them)."""
        bad = []
        for info in self.blobs_info():
            if progress is not None:
                progress(info)
            try:
                actual, _ = fsafe.hash_regular(info.path)
            except FileNotFoundError:
                continue  # removed meanwhile (a concurrent remove or prune)
            except OSError as exc:  # swapped for a link or FIFO since it was listed
                bad.append((info, f"unreadable ({exc.strerror or exc})"))
                continue
            if actual == info.sha256:
                self._record_meta(info.sha256, info.path)  # (skipped on a read-only cache)
            else:
                try:  # force a re-check on use
                    fsafe.remove(self._meta_path(info.sha256))
                except OSError as exc:
                    if not fsafe.is_readonly_error(exc):
                        raise
                bad.append((info, actual))
        return bad

    def remove_blob(self, sha256: str) -> list[str]:
        """Delete a blob and every ref to it; returns the URLs that pointed at it."""
        if not is_digest(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        urls = []
        for ref in self.all_refs():
            if ref["sha256"] == sha256:
                fsafe.remove(ref["_path"])
                urls.append(ref["url"])
        self._delete_blob(sha256)
        return urls

    def find(self, target: str) -> list[str]:
        """Blob shas matching a full/prefix sha256, a URL, a ref's file name or a model name."""
        target = target.strip()
        shas = {b.sha256 for b in self.blobs_info()}
        low = target.lower()
        if len(low) >= 6 and all(c in "0123456789abcdef" for c in low):
            hits = sorted(s for s in shas if s.startswith(low))
            if hits:
                return hits
        out = []
        for ref in self.all_refs():
            if target in (ref["url"], ref.get("filename")) or target in ref.get("names", []):
                out.append(ref["sha256"])
        return sorted(set(out))

    def info(self) -> dict[str, Any]:
        """Root, counts and total size."""
        blobs = self.blobs_info() if self.blobs.is_dir() else []
        temps = self.temps()
        return {
            "root": str(self.root),
            "blobs": len(blobs),
            "refs": len(self.all_refs()),
            "names": len({n for b in blobs for n in b.names}),
            "total_bytes": sum(b.size for b in blobs),
            "partial": len(temps),
            "partial_bytes": sum(size_of(t) for t in temps),
            # Files by the strongest verification recorded for them (see .verification).
            "verification": {
                state: sum(1 for b in blobs if b.verification == state) for state in STATES
            },
        }
