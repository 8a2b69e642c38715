"""Files already in the ecosystem's caches: adopted, once verified, instead of downloaded again.

* **torch.hub** (``$TORCH_HOME/hub/checkpoints/<file name of the URL>``, where torchvision,
  Cadene, lukemelas and timm's legacy URLs put their files): adopted when the request knows
  the file's hash in advance (a pinned sha256, or the file name's hash prefix, the rule every
  download follows); never on trust.
* **Hugging Face** (huggingface_hub's layout under ``HF_HUB_CACHE``:
  ``models--<org>--<name>/refs/<revision>`` holds a commit, ``snapshots/<commit>/<path>``
  links to ``blobs/<etag>``): for an LFS file the blob's name *is* the sha256 the Hub announced
  (its ``X-Linked-Etag``), for a file kept in git its git blob sha1. The bytes are hashed and
  must match that name (and a pinned sha256, lock revision or size, when the request has
  them); they are then recorded as ``origin``-verified at that commit, as a download checked
  against the Hub's HEAD would be.

An adopted file is copied into omnizoo's content-addressed cache (hashed in the same pass): a
hard link would share the inode, so omnizoo's read-only bit would change the other cache's
file and that cache could change omnizoo's blob. No HTTP request is made for it. A file that
does not verify is left where it is, not adopted, and the request goes on as usual.
``OMNIZOO_ECOSYSTEM_CACHES=0`` turns adoption off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import HashMismatchError, IntegrityError
from ..settings import Settings
from .cache import Cache
from .hashing import SNIFF_BYTES, check_digest, reject_if_not_weights
from .origin import HubFile, hub_file
from .verification import ORIGIN, Expected, Fetched, check_format

__all__ = [
    "Found",
    "adopt",
    "copy_verified",
    "find_in_ecosystem",
    "hf_cached",
    "torch_hub_file",
]

log = logging.getLogger("omnizoo.weights")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Found:
    """A file in another cache, and what the request may expect of it."""

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


def hf_cached(hub: HubFile, settings: Settings) -> tuple[Path, str, str] | None:
    """``(file, blob name, commit)`` of a Hub file in the Hugging Face cache, or None."""
    if settings.hf_hub_cache is None:
        return None
    root = settings.hf_hub_cache / _repo_folder(hub.repo)
    revision = hub.revision.replace("%2F", "/")
    commit = revision if _SHA1.match(revision) else None
    if commit is None:
        try:
            commit = (root / "refs" / revision).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not _SHA1.match(commit):
            return None
    snapshot = root / "snapshots" / commit
    path = snapshot / hub.path
    try:  # the file must stay inside the snapshot (a path with '..' is not followed)
        path.relative_to(snapshot)
        if ".." in Path(hub.path).parts or not path.is_file():
            return None
        blob = Path(os.readlink(path)).name if path.is_symlink() else None
    except (OSError, ValueError):
        return None
    if blob is None:  # a cache without symlinks (Windows): no name to check the bytes against
        return None
    if Path(os.readlink(path)).parent.name != "blobs":
        return None  # not huggingface_hub's layout
    return path, blob, commit


def _hub_expectation(want: Expected, blob: str, commit: str) -> Expected | None:
    """What the bytes must be, given the cache's blob name, or None when it cannot be used."""
    if want.revision is not None and want.revision != commit:
        return None  # a lock pins another commit
    if _SHA256.match(blob):
        if want.sha256 is not None and want.sha256 != blob:
            return None  # another file than the one pinned
        state = want.state if want.sha256 else ORIGIN
        return Expected(sha256=blob, size=want.size, state=state, revision=commit)
    if _SHA1.match(blob) and want.sha256 is None:
        return Expected(git_sha1=blob, size=want.size, state=ORIGIN, revision=commit)
    return None


def find_in_ecosystem(
    urls: Sequence[str], want: Expected, settings: Settings, hf_hub_id: str | None = None
) -> Iterator[Found]:
    """Candidate files in the Hugging Face and torch.hub caches for this request, each with
    the expectation its bytes must meet (nothing is read or hashed here)."""
    if not settings.ecosystem_caches:
        return
    for url in urls:
        hub = hub_file(url, settings, hf_hub_id)
        if hub is not None:
            cached = hf_cached(hub, settings)
            if cached is not None:
                path, blob, commit = cached
                expect = _hub_expectation(want, blob, commit)
                if expect is not None:
                    yield Found(path, expect, "Hugging Face cache")
            continue
        if want.sha256 is None and want.hash_prefix is None:
            continue  # torch.hub files are adopted only against a hash known in advance
        hub_path = torch_hub_file(url, settings)
        if hub_path is not None:
            yield Found(hub_path, want, "torch.hub cache")


def copy_verified(source: Path, temp: Path, want: Expected, fmt: str | None, where: str) -> str:
    """Copy ``source`` to ``temp`` hashing as it goes, and check it as a download is checked
    (sniff, size, sha256 or prefix, git blob sha1, declared format). Returns the sha256;
    raises :class:`~omnizoo.errors.IntegrityError` (``temp`` is then the caller's to delete)."""
    import hashlib

    digest = hashlib.sha256()
    git = hashlib.sha1() if want.git_sha1 else None
    size = os.stat(source).st_size
    if git is not None:
        git.update(b"blob %d\0" % size)
    head = b""
    copied = 0
    with open(source, "rb") as src, open(temp, "xb") as dst:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            digest.update(chunk)
            if git is not None:
                git.update(chunk)
            dst.write(chunk)
            copied += len(chunk)
    if copied != size:
        raise IntegrityError(f"{where}: {source} changed while it was copied")
    reject_if_not_weights(head, str(source))
    actual = digest.hexdigest()
    check_digest(
        actual,
        copied,
        url=f"{source} ({where})",
        sha256=want.sha256,
        hash_prefix=want.hash_prefix,
        expected_size=want.size,
    )
    if git is not None and git.hexdigest() != want.git_sha1:
        raise HashMismatchError(
            f"{source} ({where}): git blob sha1 {git.hexdigest()}, but the cache names it "
            f"{want.git_sha1}; not adopted"
        )
    check_format(head, fmt, f"{source} ({where})")
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
    the :class:`~omnizoo.errors.IntegrityError` saying why."""
    from .refs import point_refs

    cache.ensure()
    temp = cache.new_temp(key)
    try:
        try:
            digest = copy_verified(found.path, temp, found.want, fmt, found.where)
        except (IntegrityError, OSError) as exc:
            if strict:
                raise
            log.warning("not adopting %s from the %s: %s", found.path, found.where, exc)
            return None
        blob = cache.publish(temp, digest)
        if not point_refs(
            cache,
            digest,
            urls,
            name=name,
            fetched_from=found.path.as_uri(),
            verification=found.want.state,
            revision=found.want.revision,
            git_sha1=found.want.git_sha1,
        ):
            return None  # pruned at once: the caller downloads
    finally:
        cache.release_temp(temp)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
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
