"""Maintenance of the weights cache: list, verify, remove, prune, info.

A mixin of :class:`omnizoo.weights.cache.Cache` (the layout is documented there and in
docs/cache.md); kept apart so that the download path stays small.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hashing import hash_file
from .verification import STATES, state_of

__all__ = ["BlobInfo", "CacheMaintenance"]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return None  # a torn/corrupt metadata file counts as missing
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``data`` (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


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

    def all_refs(self) -> list[dict[str, Any]]:
        out = []
        if self.refs.is_dir():
            for path in sorted(self.refs.glob("*.json")):
                data = _read_json(path)
                if (
                    data
                    and isinstance(data.get("sha256"), str)
                    and isinstance(data.get("url"), str)
                ):
                    data["_path"] = str(path)
                    out.append(data)
        return out

    def blobs_info(self) -> list[BlobInfo]:
        """Every blob with the URLs/names that point at it, sorted by first name/url."""
        by_sha: dict[str, BlobInfo] = {}
        if self.blobs.is_dir():
            for path in self.blobs.iterdir():
                if len(path.name) == 64 and path.is_file():
                    by_sha[path.name] = BlobInfo(path.name, path, path.stat().st_size)
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
            actual, _ = hash_file(info.path)
            if actual == info.sha256:
                self._record_meta(info.sha256, info.path)
            else:
                self._meta_path(info.sha256).unlink(missing_ok=True)  # force a re-check on use
                bad.append((info, actual))
        return bad

    def remove_blob(self, sha256: str) -> list[str]:
        """Delete a blob and every ref to it; returns the URLs that pointed at it."""
        urls = []
        for ref in self.all_refs():
            if ref["sha256"] == sha256:
                Path(ref["_path"]).unlink(missing_ok=True)
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

    def prune(self, *, dry_run: bool = False) -> dict[str, list[str]]:
        """Delete leftovers: dead partial downloads, stray temp files, refs whose blob is gone,
        meta without a blob, blobs no ref points at, and unused lock files."""
        report: dict[str, list[str]] = {
            "partial": [],
            "refs": [],
            "meta": [],
            "blobs": [],
            "locks": [],
        }
        for temp in self.temps():
            if self.is_leftover(temp):
                report["partial"].append(str(temp))
        for d in (self.refs, self.meta, self.blobs, self.tmp):
            if d.is_dir():
                for stray in d.glob(".*.tmp"):
                    report["partial"].append(str(stray))
        if self.tmp.is_dir():
            for info in self.tmp.glob("*.part.json"):
                if not info.with_name(info.name[: -len(".json")]).exists() or (
                    str(info.with_name(info.name[: -len(".json")])) in report["partial"]
                ):
                    report["partial"].append(str(info))
        shas = {b.sha256 for b in self.blobs_info()} if self.blobs.is_dir() else set()
        referenced = set()
        for ref in self.all_refs():
            if ref["sha256"] in shas:
                referenced.add(ref["sha256"])
            else:
                report["refs"].append(ref["_path"])
        if self.meta.is_dir():
            for meta in self.meta.glob("*.json"):
                if meta.stem not in shas or meta.stem not in referenced:
                    report["meta"].append(str(meta))
        for sha in sorted(shas - referenced):
            report["blobs"].append(str(self.blob_path(sha)))
        if self.locks.is_dir():
            busy = {t.name.split(".", 1)[0] for t in self.temps() if not self.is_leftover(t)}
            for lock in self.locks.glob("*.lock"):
                if lock.stem not in busy:
                    report["locks"].append(str(lock))
        if not dry_run:
            for paths in report.values():
                for p in paths:
                    with contextlib.suppress(FileNotFoundError):
                        os.chmod(p, 0o644)
                        os.unlink(p)
        return report

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
            "partial_bytes": sum(_size(t) for t in temps),
            # Files by the strongest verification recorded for them (see .verification).
            "verification": {
                state: sum(1 for b in blobs if b.verification == state) for state in STATES
            },
        }
