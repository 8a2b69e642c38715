"""download_weights against a real loopback HTTP server, with every fault injected.

Each fault test checks the error (type and message) and that nothing unverified entered the
cache (no blob, no ref, no partial file left behind).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnizoo import download_weights, settings
from omnizoo.errors import (
    ConfigurationError,
    DownloadError,
    HashMismatchError,
    NotAWeightsFileError,
    OfflineError,
    RemoteNotFoundError,
)
from omnizoo.weights.cache import Cache
from omnizoo.weights.download import fetch_verified
from omnizoo.weights.verification import plan_candidates
from weightserver import WeightServer

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
NAME = f"/models/tiny-{SHA[:8]}.pth"  # torch.hub style: the file name carries a hash prefix


@pytest.fixture
def fast(isolated_home: Path) -> Iterator[Path]:
    """An empty cache, short back-off and timeouts."""
    with settings.override(backoff=0.01, retries=3, read_timeout=2.0, connect_timeout=2.0):
        yield isolated_home


def cache_of(home: Path) -> Cache:
    return Cache(home / "weights")


def blobs(home: Path) -> list[str]:
    d = home / "weights" / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def assert_nothing_cached(home: Path) -> None:
    """No blob, no ref, no partial download."""
    assert blobs(home) == []
    refs = home / "weights" / "refs"
    assert not refs.is_dir() or list(refs.iterdir()) == []
    tmp = home / "weights" / "tmp"
    assert not tmp.is_dir() or list(tmp.iterdir()) == []


# -- the good path -------------------------------------------------------------------------
def test_download_verifies_by_prefix_and_stores_by_content(
    fast: Path, weight_server: WeightServer
) -> None:
    url = weight_server.add(NAME, DATA)
    path = download_weights(url)
    assert path == fast / "weights" / "blobs" / "sha256" / SHA
    assert path.read_bytes() == DATA
    ref = cache_of(fast).ref(url)
    assert ref is not None and ref["sha256"] == SHA
    # A second call is a cache hit: no new request.
    assert download_weights(url) == path
    assert weight_server.route(url).requests == 1
    # The same bytes through a second URL are stored once, and a URL whose bytes are already
    # cached under the full sha256 given needs no request at all.
    url2 = weight_server.add("/mirror/copy.bin", DATA)
    assert download_weights(url2) == path
    assert download_weights(weight_server.url("/never/requested.bin"), sha256=SHA) == path
    assert blobs(fast) == [SHA]
    assert "/never/requested.bin" not in weight_server.routes


def test_full_sha256_argument(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add("/m/model.onnx", DATA)
    assert download_weights(url, sha256=SHA.upper()).read_bytes() == DATA
    with pytest.raises(ConfigurationError, match="64 hex"):
        download_weights(url, sha256="abc")


def test_no_hash_is_recorded_then_checked(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add("/hf/model.safetensors", DATA)  # no hash anywhere
    path = download_weights(url)
    assert path.name == SHA  # the digest was recorded ...
    assert cache_of(fast).ref(url)["sha256"] == SHA  # type: ignore[index]
    # ... so a later read notices when the bytes change under it
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"\x00\x01\x02")
    os.utime(path, ns=(1, 1))
    path2 = download_weights(url)  # detected, deleted, downloaded again
    assert path2.read_bytes() == DATA
    assert weight_server.route(url).bodies == 2


def test_cache_hit_is_a_stat_not_a_rehash(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = weight_server.add(NAME, DATA)
    download_weights(url)
    import omnizoo.weights.fsafe as cache_module  # the cache hashes blobs through fsafe

    def no_hash(path: Path) -> tuple[str, int]:
        raise AssertionError("a cache hit must not re-hash the file")

    monkeypatch.setattr(cache_module, "hash_regular", no_hash)
    download_weights(url)
    # Touching the file (size/mtime changed) forces exactly one re-verification.
    blob = fast / "weights" / "blobs" / "sha256" / SHA
    os.utime(blob, ns=(10**9, 10**9))
    calls = []
    monkeypatch.setattr(cache_module, "hash_regular", lambda p: calls.append(p) or (SHA, len(DATA)))
    download_weights(url)
    download_weights(url)
    assert calls == [blob]


def test_fetch_weights_uses_the_mirror_chain(fast: Path, weight_server: WeightServer) -> None:
    from omnizoo.values.card import WeightsFile

    dead = weight_server.add("/dead/tiny.pth", status=404)
    good = weight_server.add(NAME, DATA)
    wf = WeightsFile(urls=(dead, good), filename=NAME.rsplit("/", 1)[-1], size=len(DATA))
    assert fetch_verified(wf, name="test:tiny").path.read_bytes() == DATA
    assert cache_of(fast).ref(dead)["names"] == ["test:tiny"]  # type: ignore[index]
    # A recorded size that disagrees is an integrity error.
    bad = WeightsFile(
        urls=(weight_server.add("/s/other.pth", DATA),), filename="other.pth", size=len(DATA) + 1
    )
    with pytest.raises(HashMismatchError, match="size mismatch"):
        fetch_verified(bad)


# -- faults ----------------------------------------------------------------------------------
def test_cut_connection_resumes_with_range(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, cut_at=100_000)
    assert download_weights(url).read_bytes() == DATA
    route = weight_server.route(url)
    assert (route.bodies, route.range_requests) == (1, 1)
    assert route.bytes_sent == len(DATA)  # nothing was fetched twice


def test_server_ignoring_range_restarts_cleanly(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, cut_at=100_000, ignore_range=True)
    assert download_weights(url).read_bytes() == DATA
    route = weight_server.route(url)
    assert (route.bodies, route.range_requests) == (2, 0)
    assert blobs(fast) == [SHA]


def test_resume_without_validator(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, cut_at=100_000, etag=None)  # plain Range, no If-Range
    assert download_weights(url).read_bytes() == DATA
    route = weight_server.route(url)
    assert (route.bodies, route.range_requests, route.bytes_sent) == (1, 1, len(DATA))


def test_file_changed_between_cut_and_resume_restarts(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import weightserver

    url = weight_server.add(NAME, DATA, cut_at=50_000)
    route = weight_server.route(url)
    real = weightserver._Handler.do_GET

    def do_get_then_change_etag(handler: weightserver._Handler) -> None:
        real(handler)
        route.etag = '"v2"'  # the file "changed" after the first response

    monkeypatch.setattr(weightserver._Handler, "do_GET", do_get_then_change_etag)
    # The resume carries If-Range: "v1"; the server answers 200 with the whole new file.
    assert download_weights(url).read_bytes() == DATA
    assert (route.bodies, route.range_requests) == (2, 0)


def test_repeated_cuts_fail_with_download_error(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, cut_at=0, cut_times=99)
    with pytest.raises(DownloadError, match=r"giving up after 3 attempt\(s\).*peer closed") as ei:
        download_weights(url)
    assert url in str(ei.value) and ei.value.url == url
    assert_nothing_cached(fast)


def test_5xx_is_retried_then_succeeds(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, fail_500=2)
    assert download_weights(url).read_bytes() == DATA
    assert weight_server.route(url).requests == 3


def test_5xx_too_often_fails(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, fail_500=10)
    with pytest.raises(DownloadError, match=f"{url}: giving up after 3 .*HTTP 500") as ei:
        download_weights(url)
    assert not isinstance(ei.value, RemoteNotFoundError)
    assert weight_server.route(url).requests == 3
    assert_nothing_cached(fast)


@pytest.mark.parametrize("status", [404, 403, 410])
def test_not_found_fails_at_once(fast: Path, weight_server: WeightServer, status: int) -> None:
    url = weight_server.add(NAME, status=status)
    with pytest.raises(RemoteNotFoundError, match=f"{url}: HTTP {status}") as ei:
        download_weights(url)
    assert ei.value.url == url
    assert weight_server.route(url).requests == 1  # no retry
    assert_nothing_cached(fast)


def test_wrong_bytes_are_rejected(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, wrong_bytes=True)
    with pytest.raises(HashMismatchError, match=f"{url}: sha256 mismatch.*'{SHA[:8]}'"):
        download_weights(url)
    assert_nothing_cached(fast)
    url2 = weight_server.add("/m/full.bin", DATA, wrong_bytes=True)
    with pytest.raises(HashMismatchError, match=f"expected {SHA}, got "):
        download_weights(url2, sha256=SHA)
    assert_nothing_cached(fast)


def test_html_page_is_rejected(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add("/m/model.bin", DATA, html=True)  # no hash: only the sniff stops it
    with pytest.raises(NotAWeightsFileError, match=f"{url} returned an HTML page"):
        download_weights(url)
    assert_nothing_cached(fast)


def test_lfs_pointer_is_rejected(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add("/m/model.safetensors", DATA, lfs=True)
    with pytest.raises(NotAWeightsFileError, match="Git-LFS pointer file"):
        download_weights(url)
    assert_nothing_cached(fast)


def test_slow_server_times_out(fast: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(NAME, DATA, delay=1.0)
    with (
        settings.override(read_timeout=0.2, retries=2),
        pytest.raises(DownloadError, match="timed out"),
    ):
        download_weights(url)
    assert_nothing_cached(fast)
    assert weight_server.route(url).requests == 2


def test_connection_refused_is_retried(fast: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    url = f"http://127.0.0.1:{port}/m/x-{SHA[:8]}.pth"
    with pytest.raises(DownloadError, match=r"giving up after 3 attempt\(s\).*ConnectError"):
        download_weights(url)
    assert_nothing_cached(fast)


# -- offline, mirrors, HF_ENDPOINT -----------------------------------------------------------
def test_offline_serves_cache_and_fails_fast(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = weight_server.add(NAME, DATA)
    path = download_weights(url)
    import omnizoo.weights.transport as transport

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("offline mode made a network call")

    monkeypatch.setattr(transport, "get_client", no_network)
    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    settings.reset()
    assert download_weights(url) == path
    missing = weight_server.add("/m/missing.pth", DATA)
    with pytest.raises(OfflineError, match="OMNIZOO_OFFLINE=1") as ei:
        download_weights(missing)
    message = str(ei.value)
    assert missing in message and f"omnizoo download {missing}" in message
    assert "checkpoint_path=" in message and "OMNIZOO_HOME" in message
    assert weight_server.route(missing).requests == 0


def test_mirrors_in_order_with_dead_mirror(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = "https://download.invalid/models/"  # never reachable: must not be needed
    dead = weight_server.url("/dead/")
    good = weight_server.url("/mirror/")
    weight_server.add("/mirror" + NAME.removeprefix("/models"), DATA)
    monkeypatch.setenv("OMNIZOO_MIRRORS", json.dumps({origin: [dead, good]}))
    settings.reset()
    url = origin + NAME.removeprefix("/models/")
    with settings.override(backoff=0.01, retries=2):
        assert download_weights(url).read_bytes() == DATA
    assert cache_of(fast).ref(url)["fetched_from"] == good + NAME.removeprefix("/models/")  # type: ignore[index]
    assert [c.url for c in plan_candidates([url], settings.get_settings())] == [
        dead + NAME.removeprefix("/models/"),
        good + NAME.removeprefix("/models/"),
        url,
    ]


def test_all_mirrors_fail_lists_every_url(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = weight_server.url("/orig/")
    name = f"x-{SHA[:8]}.pth"  # a hash prefix: the mirror may be used
    weight_server.add(f"/orig/{name}", status=404)
    weight_server.add(f"/mirror/{name}", status=410)
    monkeypatch.setenv("OMNIZOO_MIRRORS", json.dumps({origin: weight_server.url("/mirror/")}))
    settings.reset()
    with pytest.raises(RemoteNotFoundError, match=r"every URL failed .*\(2 tried\)") as ei:
        download_weights(origin + name)
    assert f"/mirror/{name}" in str(ei.value) and f"/orig/{name}" in str(ei.value)
    assert_nothing_cached(fast)


def test_hf_endpoint_rewrites_huggingface_urls(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubfiles import COMMIT, HubRepo

    origin = HubRepo(weight_server, "timm/resnet18.a1_in1k")  # announces DATA's sha256
    origin.add("model.safetensors", DATA)
    path = f"/timm/resnet18.a1_in1k/resolve/{COMMIT}/model.safetensors"  # the pinned commit
    weight_server.add(path, DATA)
    monkeypatch.setenv("HF_ENDPOINT", weight_server.base + "/")
    monkeypatch.setenv("OMNIZOO_HF_ORIGIN", origin.base)
    settings.reset()
    url = "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors"
    assert download_weights(url).read_bytes() == DATA
    assert weight_server.route(path).bodies == 1 and origin.bodies(DATA) == 0
    # Other hosts are left alone.
    other = "https://example.invalid/huggingface.co/x"
    assert [c.url for c in plan_candidates([other], settings.get_settings())] == [other]


def test_name_form_resolves_the_card(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnizoo.registry import downloads as registry
    from omnizoo.values.card import ModelCard, WeightsFile

    url = weight_server.add(NAME, DATA)
    card = ModelCard(
        source="torchvision",
        arch="tiny",
        tag="V1",
        weights=WeightsFile(urls=(url,), filename=NAME.rsplit("/", 1)[-1]),
    )
    monkeypatch.setattr(registry, "get_card", lambda name: card)
    assert download_weights("torchvision:tiny.V1").read_bytes() == DATA
    assert cache_of(fast).ref(url)["names"] == ["torchvision:tiny.V1"]  # type: ignore[index]
    from omnizoo.errors import NoPretrainedWeightsError

    monkeypatch.setattr(registry, "get_card", lambda name: ModelCard("timm", "bare"))
    with pytest.raises(NoPretrainedWeightsError, match="timm:bare has no pretrained weights"):
        download_weights("timm:bare")


def test_keyboard_interrupt_keeps_partial_and_next_call_resumes(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnizoo.weights import hashing

    big = os.urandom(3_000_000)
    url = weight_server.add(f"/m/big-{hashlib.sha256(big).hexdigest()[:8]}.pth", big)
    real_write = hashing.HashingWriter.write

    def write_then_interrupt(self: hashing.HashingWriter, batch: list[bytes]) -> None:
        real_write(self, batch)
        if self.size >= 1_000_000:
            raise KeyboardInterrupt

    monkeypatch.setattr(hashing.HashingWriter, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        download_weights(url)
    monkeypatch.setattr(hashing.HashingWriter, "write", real_write)
    partials = list((fast / "weights" / "tmp").glob("*.part"))
    assert len(partials) == 1 and blobs(fast) == []  # kept, but not a cache entry
    assert download_weights(url).read_bytes() == big
    route = weight_server.route(url)
    assert (route.bodies, route.range_requests) == (1, 1)  # the second request was a resume
    assert_nothing_cached_but(fast, hashlib.sha256(big).hexdigest())


def assert_nothing_cached_but(home: Path, sha: str) -> None:
    assert blobs(home) == [sha]
    assert list((home / "weights" / "tmp").iterdir()) == []


def test_unsupported_scheme_fails_at_once(fast: Path) -> None:
    with pytest.raises(DownloadError, match="unsupported URL scheme"):
        download_weights("ftp://example.invalid/x-abcdef12.pth")
    assert_nothing_cached(fast)


@pytest.mark.parametrize(
    ("progress", "tty", "shown"),
    [
        (True, False, True),  # OMNIZOO_PROGRESS=1
        (None, True, True),  # auto, stderr is a terminal
        (None, False, False),  # auto, not a terminal (CI logs, pipes)
        (False, True, False),  # OMNIZOO_PROGRESS=0
    ],
)
def test_progress_bar_only_where_wanted(
    fast: Path,
    weight_server: WeightServer,
    monkeypatch: pytest.MonkeyPatch,
    progress: bool | None,
    tty: bool,
    shown: bool,
) -> None:
    import io

    class FakeStderr(io.StringIO):
        def isatty(self) -> bool:
            return tty

    fake = FakeStderr()
    monkeypatch.setattr(sys, "stderr", fake)
    url = weight_server.add(NAME, DATA)
    with settings.override(progress=progress):
        download_weights(url)
    text = fake.getvalue()
    assert (NAME.rsplit("/", 1)[-1][:20] in text and "B/s" in text) == shown, text


def test_full_sha256_wins_over_a_misleading_file_name(
    fast: Path, weight_server: WeightServer
) -> None:
    # "-1." looks like a hash prefix to torch.hub's rule; with the full sha256 it is ignored.
    url = weight_server.add("/m/model-1.0.pth", DATA)
    assert download_weights(url, sha256=SHA).read_bytes() == DATA
    assert download_weights(url, sha256=SHA).read_bytes() == DATA
    assert weight_server.route(url).requests == 1  # the second call was a cache hit
