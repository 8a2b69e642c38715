"""Hugging Face-hosted files: what the origin says they are, before their bytes are fetched.

A file on the Hub is named by a resolve URL, ``<hub>/<repo>/resolve/<revision>/<path>``. The
Hub answers a ``HEAD`` on it with the facts omnizoo verifies the body against, wherever the
body then comes from (the origin, ``HF_ENDPOINT`` or an ``OMNIZOO_MIRRORS`` rewrite):

* ``X-Linked-Etag: "<sha256>"`` and ``X-Linked-Size``: an LFS file's sha256 and size;
* ``ETag: "<git blob sha1>"`` (40 hex) with ``Content-Length``: a small file kept in git
  itself (``config.json``), checked by ``sha1(b"blob <size>\\0" + content)``, never taken
  for a sha256;
* ``X-Repo-Commit``: the commit the revision resolved to. The body is fetched at that commit
  (``/resolve/<commit>/``), so it is the file the HEAD described even if a branch moves.

The HEAD always goes to the origin (``OMNIZOO_HF_ORIGIN``, https://huggingface.co by default),
never to a mirror. Like huggingface_hub's ``get_hf_file_metadata``, it reads the headers of
the first response and does not follow the Hub's redirect to its CDN (only a redirect within
the same host, such as a renamed repository, is followed). Unlike huggingface_hub, which
records the ``X-Linked-Etag`` but never checks the downloaded bytes against it, omnizoo
refuses a body whose sha256 or size differs.

>>> from omnizoo.settings import Settings
>>> from pathlib import Path
>>> f = hub_file("https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors",
...              Settings(home=Path("/tmp")))
>>> f.repo, f.revision, f.path
('timm/resnet18.a1_in1k', 'main', 'model.safetensors')
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from ..errors import DownloadError, IntegrityError, RemoteNotFoundError
from ..settings import DEFAULT_HF_ENDPOINT, Settings

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = [
    "HubFile",
    "OriginFacts",
    "git_blob_sha1",
    "hub_file",
    "origin_url",
    "resolve_on_origin",
]

log = logging.getLogger("omnizoo.weights")

# <repo>/resolve/<revision>/<path>; a repo is "org/name", a legacy "name", or a dataset/space
# ("datasets/org/name"). A revision with a slash is percent-encoded (refs%2Fpr%2F1).
_RESOLVE = re.compile(
    r"^(?P<repo>(?:(?:datasets|spaces)/)?[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<path>[^?#]+)"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_NOT_FOUND = (401, 403, 404, 410)  # 401: gated/private on the Hub without a token
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face repository, as a resolve URL names it."""

    base: str  # scheme://host[:port][/prefix], as the URL was written
    repo: str
    revision: str
    path: str

    @property
    def url(self) -> str:
        """The resolve URL on ``base``."""
        return f"{self.base}/{self.repo}/resolve/{self.revision}/{self.path}"

    def at(self, revision: str | None) -> HubFile:
        """The same file at another revision (a commit); unchanged for None."""
        return self if not revision else replace(self, revision=revision)


@dataclass(frozen=True)
class OriginFacts:
    """What the origin announced for a file (from the first response to a HEAD)."""

    url: str  # where the HEAD went
    commit: str | None  # X-Repo-Commit
    sha256: str | None  # X-Linked-Etag (an LFS file)
    git_sha1: str | None  # ETag of a file kept in git (not LFS)
    size: int | None

    def describe(self) -> str:
        what = f"sha256 {self.sha256}" if self.sha256 else f"git blob sha1 {self.git_sha1}"
        at = f" at commit {self.commit}" if self.commit else ""
        return f"{what}{at}, {self.size} bytes"


def _hub_bases(settings: Settings) -> tuple[str, ...]:
    bases = {DEFAULT_HF_ENDPOINT, "http://huggingface.co", settings.hf_endpoint, settings.hf_origin}
    return tuple(sorted((b.rstrip("/") for b in bases), key=len, reverse=True))


def hub_file(url: str, settings: Settings, hf_hub_id: str | None = None) -> HubFile | None:
    """The Hub file ``url`` names, or None when it is not a Hugging Face resolve URL.

    Recognised: ``<hub>/<repo>/resolve/<rev>/<path>`` where ``<hub>`` is huggingface.co,
    HF_ENDPOINT or OMNIZOO_HF_ORIGIN; and, for a card that names its repository
    (``hf_hub_id``), ``<anything>/<hf_hub_id>/resolve/<rev>/<path>`` (its host is its origin).
    """
    for base in _hub_bases(settings):
        if url.startswith(base + "/"):
            match = _RESOLVE.match(url[len(base) + 1 :])
            if match:
                return HubFile(base, match["repo"], match["rev"], match["path"])
    if hf_hub_id:
        marker = f"/{hf_hub_id.strip('/')}/resolve/"
        head, sep, rest = url.partition(marker)
        if sep and "://" in head:
            rev, _, path = rest.partition("/")
            path = path.split("?", 1)[0].split("#", 1)[0]
            if rev and path:
                return HubFile(head, hf_hub_id.strip("/"), rev, path)
    return None


def origin_url(hub: HubFile, settings: Settings) -> str:
    """Where the file really is: the Hub's own host (OMNIZOO_HF_ORIGIN) for a URL written
    on huggingface.co or HF_ENDPOINT; a card's own host otherwise."""
    if hub.base in _hub_bases(settings):
        return replace(hub, base=settings.hf_origin.rstrip("/")).url
    return hub.url


def resolve_on_origin(
    hub: HubFile, settings: Settings, *, sleep: Callable[[float], None] = time.sleep
) -> OriginFacts:
    """HEAD the file on its origin and return what it announces.

    Raises :class:`RemoteNotFoundError` (401/403/404/410: no such file, or gated),
    :class:`DownloadError` (unreachable after ``settings.retries`` attempts) or
    :class:`IntegrityError` (the answer carries no usable hash, or a malformed one, or a
    commit other than the one asked for).
    """
    import httpx

    from .endpoints import auth_headers
    from .transport import get_client

    url = origin_url(hub, settings)
    client = get_client(settings)
    last = ""
    for attempt in range(1, settings.retries + 1):
        try:
            response = _head(client, url, auth_headers(url, settings))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is no HTTPError
            last = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            if status in _NOT_FOUND:
                raise RemoteNotFoundError(
                    f"{url}: HTTP {status} on HEAD: the Hub has no such file (or the repository "
                    "is gated or private); check the name, revision and file",
                    url=url,
                )
            if status < 400:
                return _facts(str(response.url), response.headers, response.is_redirect, hub)
            if status < 500 and status not in (408, 429):
                raise DownloadError(f"{url}: unexpected HTTP {status} on HEAD", url=url)
            last = f"HTTP {status}"
        if attempt < settings.retries:
            sleep(settings.backoff * 2 ** (attempt - 1))
    raise DownloadError(
        f"{url}: could not ask the origin for the file's sha256 ({settings.retries} "
        f"attempt(s)): {last}",
        url=url,
    )


def _head(client: httpx.Client, url: str, auth: dict[str, str]) -> httpx.Response:
    """HEAD without following the Hub's redirect to its CDN: the facts are on the first
    response. A redirect within the same host (a renamed repository) is followed, with the
    same ``auth`` headers (the token goes to the origin's host only)."""
    for _ in range(_MAX_REDIRECTS):
        response = client.head(url, follow_redirects=False, headers=auth)
        headers = response.headers
        location = headers.get("location")
        if (
            not response.is_redirect
            or not location
            or "x-repo-commit" in headers
            or "x-linked-etag" in headers
        ):
            return response
        target = urljoin(url, location)
        if urlsplit(target)[:2] != urlsplit(url)[:2]:
            return response
        url = target
    return response


def _normalize_etag(value: str) -> str:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"').strip().lower()


def _facts(url: str, headers: Mapping[str, str], redirect: bool, hub: HubFile) -> OriginFacts:
    commit = headers.get("x-repo-commit")
    if commit is not None:
        commit = commit.strip().lower()
        if not _SHA1.match(commit):
            raise IntegrityError(
                f"{url}: the origin announced X-Repo-Commit {commit!r}, which is not a commit id "
                "(40 hex digits); refusing to trust its other headers"
            )
        if _SHA1.match(hub.revision.lower()) and commit != hub.revision.lower():
            raise IntegrityError(
                f"{url}: asked for commit {hub.revision}, the origin answered for {commit}"
            )
    linked = headers.get("x-linked-etag")
    sha256 = git_sha1 = None
    size_raw: str | None
    if linked is not None:
        sha256 = _normalize_etag(linked)
        if not _SHA256.match(sha256):
            raise IntegrityError(
                f"{url}: the origin announced X-Linked-Etag {linked!r}, which is not a sha256 "
                "(64 hex digits); the file cannot be verified"
            )
        size_raw = headers.get("x-linked-size")
    else:
        # A file kept in git (not LFS): its ETag is the git blob sha1, 40 hex digits. A
        # 64-hex ETag without X-Linked-Etag is not the Hub's convention: never taken as sha256.
        etag = _normalize_etag(headers.get("etag") or "")
        if not _SHA1.match(etag):
            raise IntegrityError(
                f"{url}: the origin announced no file hash (no X-Linked-Etag, and the ETag "
                f"{headers.get('etag')!r} is not a git blob sha1); it is not the Hugging Face "
                "Hub (see OMNIZOO_HF_ORIGIN), and the file cannot be verified"
            )
        git_sha1 = etag
        size_raw = None if redirect else headers.get("content-length")
    size = None
    if size_raw is not None:
        if not size_raw.strip().isdigit():
            raise IntegrityError(f"{url}: the origin announced a size of {size_raw!r}")
        size = int(size_raw)
    if git_sha1 is not None and size is None:
        raise IntegrityError(f"{url}: the origin announced a git blob sha1 but no size")
    return OriginFacts(url=url, commit=commit, sha256=sha256, git_sha1=git_sha1, size=size)


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file's content: ``sha1(b"blob <size>\\0" + content)``."""
    size = path.stat().st_size
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
