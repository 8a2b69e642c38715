"""Weights that are local files (``file://`` URLs), such as a model registered with
``omnizoo.register_model(..., weights=[{"tag": ..., "file": "my.pth"}])``.

A local file is read where it is, not copied into the cache: it is the user's own and may be
replaced by the next training run. It is checked like a download on every use: the sniff (not
an HTML page or a Git-LFS pointer), the size and sha256 when the card pins them, else the
file name's hash prefix, and the declared format. Without a pinned or prefixed hash it counts
as ``unverified`` (read safely, never unpickled). Digests are remembered per (path, size,
mtime, inode) within a process, so a file is hashed once per change.

>>> local_path("file:///tmp/my%20model.pth")
PosixPath('/tmp/my model.pth')
>>> local_path("https://example.org/x.pth") is None
True
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import DownloadError
from .hashing import SNIFF_BYTES, check_digest, hash_file, reject_if_not_weights
from .verification import PINNED, PREFIX, UNVERIFIED, Fetched, check_format, report

__all__ = ["fetch_local", "file_url", "local_path"]

_lock = threading.Lock()
_digests: dict[tuple[str, int, int, int], str] = {}


def local_path(url: str) -> Path | None:
    """The path a ``file://`` URL names, or None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.path))


def file_url(path: str | os.PathLike[str]) -> str:
    """The ``file://`` URL of a local file (absolute)."""
    return Path(path).expanduser().resolve().as_uri()


def _digest(path: Path) -> tuple[str, int]:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _lock:
        known = _digests.get(key)
    if known is not None:
        return known, st.st_size
    digest, size = hash_file(path)
    with _lock:
        _digests[key] = digest
    return digest, size


def fetch_local(
    url: str,
    *,
    sha256: str | None,
    hash_prefix: str | None,
    size: int | None,
    fmt: str | None,
    name: str | None = None,
) -> Fetched:
    """Check the local file ``url`` names (see the module docstring) and return it."""
    path = local_path(url)
    if path is None:
        raise DownloadError(f"{url} is not a file:// URL", url=url)
    what = name or str(path)
    if not path.is_file():
        raise DownloadError(f"{what}: the weights file {path} does not exist", url=url)
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    reject_if_not_weights(head, str(path))
    digest, actual_size = _digest(path)
    check_digest(
        digest,
        actual_size,
        url=str(path),
        sha256=sha256,
        hash_prefix=hash_prefix,
        expected_size=size,
    )
    check_format(head, fmt, what)
    state = PINNED if sha256 else PREFIX if hash_prefix else UNVERIFIED
    return report(Fetched(path, digest, actual_size, state, (url,), name))
