"""Hugging Face Hub-like repositories on the loopback weights server.

The real Hub answers ``HEAD <hub>/<repo>/resolve/<rev>/<file>`` (and GET) like this:

* an LFS file: ``302`` to its CDN, with ``X-Linked-Etag: "<sha256>"``, ``X-Linked-Size``,
  ``X-Repo-Commit`` and an ``ETag`` of its own; the CDN's answer carries none of them;
* a file kept in git (``config.json``): ``200`` with ``ETag: "<git blob sha1>"``,
  ``Content-Length`` and ``X-Repo-Commit``.

:class:`HubRepo` serves files that way under a path prefix of a
:class:`~weightserver.WeightServer` (e.g. ``/hub``), at ``main`` and at its commit, and can
announce lies (another sha256, size, commit or ETag) to test that they are caught.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from omnizoo import settings
from weightserver import WeightServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob (what the Hub sends as the ETag of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hub_path(repo: str, filename: str, revision: str = "main", prefix: str = "") -> str:
    return f"{prefix}/{repo}/resolve/{revision}/{filename}"


@dataclass
class HubRepo:
    """One repository served Hub-style under ``prefix`` of ``server``."""

    server: WeightServer
    repo: str
    prefix: str = "/hub"
    commit: str = COMMIT

    @property
    def base(self) -> str:
        """The Hub's URL (what OMNIZOO_HF_ORIGIN or HF_ENDPOINT is set to)."""
        return self.server.base + self.prefix

    def path(self, filename: str, revision: str = "main") -> str:
        return hub_path(self.repo, filename, revision, self.prefix)

    def add(
        self,
        filename: str,
        data: bytes,
        *,
        lfs: bool = True,
        sha256: str | None = None,
        size: int | None = None,
        commit: str | None = None,
        etag: str | None = None,
        extra: dict[str, str] | None = None,
        require_auth: str | None = None,
    ) -> str:
        """Serve ``data`` as ``filename`` at ``main`` and at the commit; ``sha256``, ``size``,
        ``commit``, ``etag`` override what the HEAD announces (lies); ``require_auth``: the
        Authorization header a gated repo wants (401 without it). Returns the ``main`` URL on
        this server."""
        headers = {"X-Repo-Commit": commit or self.commit}
        if lfs:
            real = hashlib.sha256(data).hexdigest()
            cdn = f"{self.prefix}/cdn-lfs/{real}"
            self.server.add(cdn, data)  # the CDN knows nothing of the Hub's headers
            headers["X-Linked-Etag"] = f'"{sha256 or real}"'
            headers["X-Linked-Size"] = str(len(data) if size is None else size)
            route_etag = f'"{etag or git_blob_sha1(b"pointer " + real.encode())}"'
        else:
            route_etag = f'"{etag or git_blob_sha1(data)}"'
        headers.update(extra or {})
        for revision in ("main", self.commit):
            self.server.add(
                self.path(filename, revision),
                data,
                etag=route_etag,
                headers=dict(headers),
                redirect=f"{self.prefix}/cdn-lfs/{hashlib.sha256(data).hexdigest()}"
                if lfs
                else None,
                require_auth=require_auth,
            )
        return self.server.url(self.path(filename))

    def heads(self, filename: str) -> int:
        """HEAD requests the origin answered for ``filename`` (all revisions)."""
        return sum(self.server.route(self.path(filename, r)).heads for r in ("main", self.commit))

    def bodies(self, data: bytes) -> int:
        """Bodies the origin's CDN sent for ``data``."""
        cdn = f"{self.prefix}/cdn-lfs/{hashlib.sha256(data).hexdigest()}"
        return self.server.route(cdn).bodies


# -- the scenario of the trust tests: timm:resnet18.a1_in1k, an origin, a lying mirror ------
NAME = "timm:resnet18.a1_in1k"
REPO = "timm/resnet18.a1_in1k"
HF_URL = f"https://huggingface.co/{REPO}/resolve/main/model.safetensors"
PINNED_URL = f"https://huggingface.co/{REPO}/resolve/{COMMIT}/model.safetensors"


def safetensors_blob(n: int, seed: int) -> bytes:
    """A small valid safetensors file (one uint8 tensor of random bytes)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + random.Random(seed).randbytes(n)


REAL = safetensors_blob(300_000, 1)
LIE = random.Random(2).randbytes(len(REAL))  # "random bytes served by a mirror"
SHA_REAL = hashlib.sha256(REAL).hexdigest()
SHA_LIE = hashlib.sha256(LIE).hexdigest()


@pytest.fixture
def hub_home(tmp_path: Path, session_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty weights cache that shares the session's card index (the real cards, built
    once), with short retries and timeouts."""
    index = session_home / "index"
    index.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / "index").symlink_to(index, target_is_directory=True)
    for key, value in {
        "OMNIZOO_HOME": str(home),
        "OMNIZOO_BACKOFF": "0.01",
        "OMNIZOO_RETRIES": "2",
        "OMNIZOO_READ_TIMEOUT": "5",
        "OMNIZOO_CONNECT_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(key, value)
    settings.reset()
    yield home


@pytest.fixture
def hub(hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch) -> HubRepo:
    """The origin: timm/resnet18.a1_in1k's model.safetensors (REAL), Hub-style."""
    repo = HubRepo(weight_server, REPO)
    repo.add("model.safetensors", REAL)
    monkeypatch.setenv("OMNIZOO_HF_ORIGIN", repo.base)
    settings.reset()
    return repo


def env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings.reset()


def blobs(home: Path) -> list[str]:
    d = home / "weights" / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def refs(home: Path) -> list[dict[str, object]]:
    d = home / "weights" / "refs"
    return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.is_dir() else []


def assert_nothing_cached(home: Path) -> None:
    assert blobs(home) == [] and refs(home) == []
    tmp = home / "weights" / "tmp"
    assert not tmp.is_dir() or list(tmp.iterdir()) == []
