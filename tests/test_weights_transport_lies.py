"""A server that lies: wrong Content-Type on right bytes, redirect loops, invalid mirror URLs,
Content-Encoding it was not asked for, and a body trickled a byte a second.

Each test checks the error (type and message, naming the URL), that a mirror chain moves on
to its next URL, and that nothing unverified entered the cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnizoo import download_weights, settings
from omnizoo.errors import DownloadError
from omnizoo.values.card import WeightsFile
from omnizoo.weights.cache import Cache
from omnizoo.weights.download import fetch_verified
from weightserver import WeightServer

# Compressible (so gzip changes the bytes a lot) but not trivially so.
DATA = os.urandom(20_000) + bytes(range(256)) * 800 + os.urandom(20_000)
SHA = hashlib.sha256(DATA).hexdigest()
HASHED = f"/models/lie-{SHA[:8]}.pth"  # torch.hub style name: verified by its hash prefix


@pytest.fixture
def fast(isolated_home: Path) -> Iterator[Path]:
    with settings.override(backoff=0.01, retries=2, read_timeout=5.0, connect_timeout=5.0):
        yield isolated_home


def blobs(home: Path) -> list[str]:
    d = home / "weights" / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def assert_nothing_cached(home: Path) -> None:
    assert blobs(home) == []
    for sub in ("refs", "tmp"):
        d = home / "weights" / sub
        assert not d.is_dir() or list(d.iterdir()) == [], sub


# -- Content-Type ----------------------------------------------------------------------------
def test_right_bytes_labelled_text_html_are_accepted(fast: Path, weight_server: WeightServer):
    """Before: httpx.StreamConsumed (the sniff read the body with a second iterator)."""
    url = weight_server.add(HASHED, DATA, content_type="text/html; charset=utf-8")
    path = download_weights(url)
    assert path.read_bytes() == DATA and path.name == SHA
    # an actual HTML page labelled text/html is still refused before a byte is cached
    page = weight_server.add("/models/page.pth", html=True)
    with pytest.raises(Exception, match="returned an HTML page"):
        download_weights(page)
    assert blobs(fast) == [SHA]


# -- redirects and invalid URLs: a DownloadError each, and the chain moves on -----------------
def test_redirect_loop_is_a_download_error(fast: Path, weight_server: WeightServer) -> None:
    """Before: httpx.TooManyRedirects escaped, aborting the mirror chain."""
    loop = weight_server.add("/loop/a.pth", redirect="/loop/a.pth")
    with pytest.raises(DownloadError, match="redirect") as info:
        download_weights(loop)
    assert info.value.url == loop and loop in str(info.value)
    assert_nothing_cached(fast)
    good = weight_server.add(HASHED, DATA)
    wf = WeightsFile(urls=(loop, good), filename=HASHED.rsplit("/", 1)[-1])
    assert fetch_verified(wf).path.read_bytes() == DATA


@pytest.mark.parametrize(
    "mirror",
    [
        "http://[::1/m/",  # InvalidURL
        "http://x\udcff.invalid/m/",  # UnicodeEncodeError (a lone surrogate)
        "http://" + "a" * 64 + ".invalid/m/",  # UnicodeError (IDNA label too long)
        "http://127.0.0.1:99999/m/",
        "http://:80/m/",
    ],
    ids=["bad-port", "surrogate", "idna", "port-range", "no-host"],
)
def test_invalid_mirror_url_moves_on(fast: Path, weight_server: WeightServer, mirror: str) -> None:
    """Before: httpx.InvalidURL (or ValueError) escaped from the first mirror."""
    good = weight_server.add(HASHED, DATA)
    prefix = weight_server.url("/models/")
    with settings.override(mirrors={prefix: (mirror,)}):
        assert download_weights(good).read_bytes() == DATA
    assert weight_server.route(good).bodies == 1
    bad = mirror + HASHED.rsplit("/", 1)[-1]
    with pytest.raises(DownloadError) as info:
        download_weights(bad)
    assert bad in str(info.value) and info.value.url == bad


# -- Content-Encoding ------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "x-gzip"])
@pytest.mark.parametrize("named", [True, False], ids=["hash-prefix", "unhashed"])
def test_compressed_body_is_decoded_and_verified(
    fast: Path, weight_server: WeightServer, encoding: str, named: bool
) -> None:
    """Before: an unhashed URL cached the gzip bytes as the file; a hashed one failed with a
    misleading 'corrupted' error."""
    path = HASHED if named else f"/models/plain-{encoding}.bin"
    url = weight_server.add(path, DATA, encoding=encoding)
    got = download_weights(url)
    assert got.read_bytes() == DATA and got.name == SHA
    assert Cache(fast / "weights").ref(url)["sha256"] == SHA  # type: ignore[index]


def test_cut_compressed_body_restarts_instead_of_resuming(
    fast: Path, weight_server: WeightServer
) -> None:
    """Ranges count encoded bytes: a cut gzip body is downloaded again from byte 0."""
    url = weight_server.add("/models/cut.bin", DATA, encoding="gzip", cut_at=2000)
    assert download_weights(url).read_bytes() == DATA
    route = weight_server.route(url)
    assert (route.bodies, route.range_requests) == (2, 0)


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
def test_undecodable_encoding_is_refused_and_the_chain_moves_on(
    fast: Path, weight_server: WeightServer, encoding: str
) -> None:
    liar = weight_server.add("/mirror/lie.bin", DATA, encoding=encoding)
    with pytest.raises(DownloadError, match=f"Content-Encoding: {encoding}") as info:
        download_weights(liar)
    assert "cannot be verified" in str(info.value) and info.value.url == liar
    assert_nothing_cached(fast)
    good = weight_server.add(HASHED, DATA)
    wf = WeightsFile(urls=(liar, good), filename=HASHED.rsplit("/", 1)[-1])
    assert fetch_verified(wf).path.read_bytes() == DATA


def test_gzip_that_does_not_decode_is_a_download_error(
    fast: Path, weight_server: WeightServer
) -> None:
    import gzip

    url = weight_server.add("/models/notgzip.bin", DATA, encoding="gzip", compress=False)
    with pytest.raises(DownloadError, match="gzip-encoded body does not decode") as info:
        download_weights(url)
    assert info.value.url == url
    short = gzip.compress(DATA)[:-100]  # the stream ends early: a truncated file
    url = weight_server.add("/models/short.bin", short, encoding="gzip", compress=False)
    with pytest.raises(DownloadError, match="ends before its compressed stream does"):
        download_weights(url)
    assert_nothing_cached(fast)


# -- the total deadline ----------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_trickling_server_hits_the_total_deadline(
    fast: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte a second never trips the read timeout (60 s here); before, it never ended."""
    monkeypatch.setenv("OMNIZOO_DOWNLOAD_TIMEOUT", "2")
    monkeypatch.setenv("OMNIZOO_READ_TIMEOUT", "60")
    settings.reset()
    assert settings.get_settings().download_timeout == 2.0
    url = weight_server.add("/models/slow.bin", DATA[:100], trickle=1.0)
    # No wall-clock assertion (a loaded machine stretches any): the error names the deadline
    # that ended it, the body (100 s at this pace) never completed, and the test's own
    # timeout would catch a download that never ends.
    with pytest.raises(DownloadError, match=r"timed out.*OMNIZOO_DOWNLOAD_TIMEOUT=2s") as info:
        download_weights(url)
    assert info.value.url == url
    assert_nothing_cached(fast)
