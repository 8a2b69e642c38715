"""Files already in the ecosystem's caches: adopted, once verified, instead of downloaded again.

Another tool's cache is evidence of nothing: anyone who could write to it (a lying
``HF_ENDPOINT`` that huggingface_hub trusted, a colleague sharing the folder) chose its bytes,
its file names and its refs. A file from there is adopted only against a hash known
*independently* of that cache, and its bytes are re-hashed as they are copied:

* **pinned**: the caller's ``sha256=``, the card's, or a lock file's;
* **origin**: the sha256 and size (or a small file's git blob sha1) that the Hub's HEAD
  announces (``OMNIZOO_HF_ORIGIN``, :mod:`.origin`), asked *before* the cache is looked at;
* **prefix**: the hash prefix in a torch.hub file name.

Where they are looked for:

* **torch.hub** (``$TORCH_HOME/hub/checkpoints/<file name of the URL>``, where torchvision,
  Cadene, lukemelas and timm's legacy URLs put their files);
* **Hugging Face** (huggingface_hub's layout under ``HF_HUB_CACHE``:
  ``models--<org>--<name>/refs/<revision>`` holds a commit, ``snapshots/<commit>/<path>``
  links to ``blobs/<etag>``): the snapshot of the commit the origin (or a lock) names, then
  the one the cache's own ref names. The blob's name (which huggingface_hub takes from the
  mirror's answer) is never read as a hash, and a file whose real path leaves the repository's
  folder is not used.

Offline (``OMNIZOO_OFFLINE``/``HF_HUB_OFFLINE``) a Hugging Face file that nothing pins can only
be taken as ``unverified`` (:func:`find_unverified`): recorded so, never unpickled, and refused
outright when it is a pickle. The next online use asks the origin and replaces it if it lied.

An adopted file is copied into omnizoo's content-addressed cache (hashed in the same pass): a
hard link would share the inode, so omnizoo's read-only bit would change the other cache's
file and that cache could change omnizoo's blob. It is opened as a regular file only (a FIFO or
device is refused without blocking) and never read past the size expected of it. A file that
does not verify is left where it is, not adopted, and the request goes on as usual.
``OMNIZOO_ECOSYSTEM_CACHES=0`` turns adoption off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import (
    CacheError,
    HashMismatchError,
    IntegrityError,
    MetadataError,
    OmnizooError,
    UnpinnedError,
)
from ..settings import Settings
from . import fsafe
from .cache import Cache, url_key
from .expect import ref_urls
from .hashing import SNIFF_BYTES, check_digest, detect_format, reject_if_not_weights
from .origin import HubFile, hub_file
from .verification import UNVERIFIED, Expected, Fetched, check_format

__all__ = [
    "Found",
    "adopt",
    "copy_verified",
    "find_in_ecosystem",
    "find_unverified",
    "from_other_caches",
    "hf_cache_files",
    "torch_hub_file",
    "unverified_from_hf_cache",
]

log = logging.getLogger("omnizoo.weights")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
_MAX_REF_BYTES = 256  # a refs/<revision> file holds one commit id


@dataclass(frozen=True)
class Found:
    """A file in another cache, and what its bytes must be (known independently of it)."""

    path: Path
    want: Expected
    where: str  # "torch.hub cache" / "Hugging Face cache"


def torch_hub_file(url: str, settings: Settings) -> Path | None:
    """Where torch.hub would have stored ``url`` (its file name in hub/checkpoints)."""
    if settings.torch_home is None:
        return None
    name = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        return None
    path = settings.torch_home / "hub" / "checkpoints" / name
    return path if path.is_file() else None


def _repo_folder(repo: str) -> str:
    kind = "models"
    for prefix in ("datasets/", "spaces/"):
        if repo.startswith(prefix):
            kind, repo = prefix[:-1], repo[len(prefix) :]
    return f"{kind}--" + repo.replace("/", "--")


def _ref_commit(root: Path, revision: str) -> str | None:
    """The commit the cache's ``refs/<revision>`` names: a place to look, never evidence."""
    if ".." in PurePosixPath(revision).parts or revision.startswith("/"):
        return None
    try:  # regular file only, size-capped: a FIFO planted here must not block
        text = fsafe.read_input(root / "refs" / revision, _MAX_REF_BYTES).decode("ascii")
    except (MetadataError, OSError, UnicodeDecodeError):
        return None
    commit = text.strip()
    return commit if _SHA1.match(commit) else None


def hf_cache_files(hub: HubFile, settings: Settings, commits: Sequence[str | None]) -> list[Path]:
    """Where the Hugging Face cache may hold ``hub``: ``snapshots/<commit>/<path>`` for each of
    ``commits`` (known independently: the origin's, a lock's), then for the URL's own commit
    and the commit the cache's ``refs/<revision>`` names. Only regular files whose real path
    stays inside the repository's folder; nothing here says anything about their bytes."""
    if settings.hf_hub_cache is None:
        return []
    parts = PurePosixPath(hub.path).parts
    if not parts or ".." in parts or hub.path.startswith("/"):
        return []
    root = settings.hf_hub_cache / _repo_folder(hub.repo)
    if not root.is_dir():
        return []
    revision = hub.revision.replace("%2F", "/")
    ordered = [*commits, revision if _SHA1.match(revision) else None, _ref_commit(root, revision)]
    real_root = os.path.realpath(root)
    found: list[Path] = []
    for commit in dict.fromkeys(c for c in ordered if c and _SHA1.match(c)):
        path = root / "snapshots" / commit / hub.path
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            log.info("not using %s: it leads out of %s (to %s)", path, root, real)
            continue
        try:
            mode = os.stat(real).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            found.append(path)
    return found


def find_in_ecosystem(
    urls: Sequence[str], want: Expected, settings: Settings, hf_hub_id: str | None = None
) -> Iterator[Found]:
    """Candidate files in the Hugging Face and torch.hub caches for a request whose hash is
    known in advance (pinned, origin or prefix); none when it is not. Nothing is read or
    hashed here: :func:`adopt` checks the bytes against ``want``."""
    if not settings.ecosystem_caches or not want.known:
        return
    for url in urls:
        hub = hub_file(url, settings, hf_hub_id)
        if hub is not None:
            for path in hf_cache_files(hub, settings, (want.revision,)):
                yield Found(path, want, "Hugging Face cache")
            continue
        if want.sha256 is None and want.hash_prefix is None:
            continue  # torch.hub files are adopted only against a hash known in advance
        hub_path = torch_hub_file(url, settings)
        if hub_path is not None:
            yield Found(hub_path, want, "torch.hub cache")


def find_unverified(
    urls: Sequence[str], want: Expected, settings: Settings, hf_hub_id: str | None = None
) -> Iterator[Found]:
    """Offline, with no hash known in advance: the Hugging Face cache's copies of the file, to
    be taken as ``unverified`` at best (no revision: the cache's refs are no evidence)."""
    if not settings.ecosystem_caches:
        return
    loose = Expected(size=want.size, state=UNVERIFIED)
    for url in urls:
        hub = hub_file(url, settings, hf_hub_id)
        if hub is not None:
            for path in hf_cache_files(hub, settings, ()):
                yield Found(path, loose, "Hugging Face cache")


def copy_verified(source: Path, temp: Path, want: Expected, fmt: str | None, where: str) -> str:
    """Copy ``source`` to ``temp`` hashing as it goes, and check it as a download is checked
    (sniff, size, sha256 or prefix, git blob sha1, declared format); a pickle with no hash
    known in advance is refused. ``source`` must be a regular file (a symlink is followed) and
    is never read past the expected size. Returns the sha256; raises
    :class:`~omnizoo.errors.IntegrityError` or ``OSError`` (``temp`` is then the caller's to
    delete)."""
    label = f"{source} ({where})"
    with os.fdopen(fsafe.open_regular(source, follow=True), "rb") as src:
        size = os.fstat(src.fileno()).st_size
        if want.size is not None and size != want.size:  # before reading a byte of it
            raise HashMismatchError(
                f"{label}: size mismatch: expected {want.size} bytes, the file has {size}; "
                "not adopted"
            )
        digest = hashlib.sha256()
        git = hashlib.sha1(b"blob %d\0" % size) if want.git_sha1 else None
        head = b""
        copied = 0
        with os.fdopen(fsafe.create_new(temp), "wb") as dst:
            while chunk := src.read(min(_CHUNK, size + 1 - copied)):
                copied += len(chunk)
                if copied > size:
                    break  # growing while read: never more than it said it had
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                digest.update(chunk)
                if git is not None:
                    git.update(chunk)
                dst.write(chunk)
    if copied != size:
        raise IntegrityError(f"{label}: the file changed while it was copied; not adopted")
    reject_if_not_weights(head, label)
    actual = digest.hexdigest()
    check_digest(
        actual,
        copied,
        url=label,
        sha256=want.sha256,
        hash_prefix=want.hash_prefix,
        expected_size=want.size,
    )
    if git is not None and git.hexdigest() != want.git_sha1:
        raise HashMismatchError(
            f"{label}: git blob sha1 {git.hexdigest()}, but the origin announced "
            f"{want.git_sha1}; not adopted"
        )
    if not want.known and detect_format(head) == "pickle":
        raise UnpinnedError(
            f"{label} is a pickle (torch.save file) that nothing known in advance confirms "
            "(no pinned sha256, and the origin could not be asked); an unverified pickle is "
            "never used, since loading one can run code"
        )
    check_format(head, fmt, label)
    return actual


def adopt(
    cache: Cache,
    found: Found,
    urls: Sequence[str],
    *,
    name: str | None,
    fmt: str | None,
    key: str,
    strict: bool = False,
) -> Fetched | None:
    """Copy a found file into the cache if it verifies; point ``urls`` (and ``name``) at it.
    None when it does not verify (logged; the caller downloads as usual), or with ``strict``
    the omnizoo error saying why (an unreadable file: :class:`~omnizoo.errors.CacheError`).
    Nothing that can fail comes between publishing the blob and pointing the refs at it."""
    from .refs import point_refs

    fetched_from = found.path.absolute().as_uri()  # a relative path has no URI: first
    cache.ensure()
    temp = cache.new_temp(key)
    try:
        try:
            digest = copy_verified(found.path, temp, found.want, fmt, found.where)
        except (IntegrityError, OSError) as exc:
            if strict:
                if isinstance(exc, OmnizooError):
                    raise
                reason = exc.strerror or str(exc)
                if isinstance(exc, fsafe.NotRegularFileError):
                    reason = "not a regular file (a FIFO, device, socket or directory)"
                raise CacheError(f"{found.where}: cannot read {found.path}: {reason}") from exc
            log.warning("not adopting %s from the %s: %s", found.path, found.where, exc)
            return None
        blob = cache.publish(temp, digest)
        if not point_refs(
            cache,
            digest,
            urls,
            name=name,
            fetched_from=fetched_from,
            verification=found.want.state,
            revision=found.want.revision,
            git_sha1=found.want.git_sha1,
        ):
            return None  # pruned at once: the caller downloads
    finally:
        cache.release_temp(temp)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    if found.want.state == UNVERIFIED:
        log.warning(
            "%s: taken from the %s as unverified: nothing known in advance confirms its sha256 "
            "(offline, and nothing pins it); it is never unpickled, and the next online use "
            "checks it against its origin",
            found.path,
            found.where,
        )
    else:
        log.info("adopted %s from the %s (%s)", found.path, found.where, found.want.state)
    return Fetched(
        blob,
        digest,
        blob.stat().st_size,
        found.want.state,
        tuple(urls),
        name,
        found.want.revision,
    )


def from_other_caches(
    cache: Cache,
    urls: tuple[str, ...],
    hub: HubFile | None,
    want: Expected,
    name: str | None,
    fmt: str | None,
    settings: Settings,
    hf_hub_id: str | None,
) -> Fetched | None:
    """The file from the torch.hub or Hugging Face cache, checked against ``want`` (a hash
    known in advance; nothing is looked at without one), or None."""
    for other in find_in_ecosystem(urls, want, settings, hf_hub_id):
        adopted = adopt(
            cache,
            other,
            ref_urls(urls, hub, other.want.revision),
            name=name,
            fmt=fmt,
            key=other.want.sha256 or url_key(urls[0]),
        )
        if adopted is not None:
            return adopted
    return None


def unverified_from_hf_cache(
    cache: Cache,
    urls: tuple[str, ...],
    hub: HubFile | None,
    want: Expected,
    name: str | None,
    fmt: str | None,
    settings: Settings,
    hf_hub_id: str | None,
) -> tuple[Fetched | None, list[str]]:
    """Offline, nothing pinned: the Hugging Face cache's copy as ``unverified`` (never a
    pickle), and why each copy found was not taken."""
    if hub is None or want.known:
        return None, []
    why: list[str] = []
    for other in find_unverified(urls, want, settings, hf_hub_id):
        try:
            adopted = adopt(
                cache, other, urls, name=name, fmt=fmt, key=url_key(urls[0]), strict=True
            )
        except (IntegrityError, CacheError) as exc:
            why.append(str(exc))
            continue
        if adopted is not None:
            return adopted, why
    return None, why
