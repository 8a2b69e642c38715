"""HTTP for the weights cache: one shared httpx client, mirrors, retries and Range resume.

``stream_to(url, writer)`` fetches one URL into a :class:`~.hashing.HashingWriter`:

* connect/read timeouts from settings; retries with exponential back-off on 5xx, 429 and
  connection errors (``settings.retries`` attempts, ``settings.backoff`` doubling);
* a cut connection resumes with ``Range: bytes=N-`` (plus ``If-Range`` when the server gave an
  ETag or Last-Modified), keeping the partial file and the running hash in memory; a server
  that answers 200 instead of 206 makes the writer start over cleanly;
* 404/403/410 raise :class:`RemoteNotFoundError` at once (no retry helps);
* the first bytes are sniffed so that an HTML page or a Git-LFS pointer fails early;
* a total deadline (``settings.download_timeout``, OMNIZOO_DOWNLOAD_TIMEOUT) bounds one URL,
  every retry included, so a server that trickles a byte a second fails too;
* a ``Content-Encoding`` the server applied anyway is decoded or refused
  (:mod:`omnizoo.weights.encoding`): the bytes verified are always the file's;
* every httpx exception (a redirect loop, an invalid URL, a protocol error) becomes a
  :class:`DownloadError` naming the URL, so a mirror chain moves on to its next URL.

Where a request goes and with which credentials (mirrors, HF_ENDPOINT, the Hub token) is
:mod:`omnizoo.weights.endpoints`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import DownloadError, RemoteNotFoundError
from ..settings import Settings
from .encoding import content_codings, decode_body
from .endpoints import auth_headers
from .hashing import SNIFF_BYTES, HashingWriter, reject_if_not_weights

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = ["BATCH_BYTES", "get_client", "stream_to"]

BATCH_BYTES = 1 << 20  # hand the hasher ~1 MiB at a time
_NOT_FOUND = (403, 404, 410)
log = logging.getLogger("omnizoo.weights")
_client_lock = threading.Lock()
_client: tuple[int, tuple[float, float], Any] | None = None  # (pid, timeouts, httpx.Client)


def get_client(settings: Settings) -> httpx.Client:
    """The process-wide httpx client (recreated after fork or when timeouts change)."""
    import httpx

    global _client
    key = (settings.connect_timeout, settings.read_timeout)
    with _client_lock:
        if _client is not None and _client[0] == os.getpid() and _client[1] == key:
            return _client[2]
        from .._version import __version__

        timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        )
        client = httpx.Client(
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": f"omnizoo/{__version__}", "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
        )
        _client = (os.getpid(), key, client)
        return client


class _Retry(Exception):
    """A transient failure of one attempt (5xx, cut, timeout)."""


class _Clock:
    """The total deadline of one URL: every attempt, back-off and byte counts against it."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.limit = settings.download_timeout
        self.start = time.monotonic()
        self.deadline = self.start + self.limit

    def remaining(self, writer: HashingWriter) -> float:
        """Seconds left; :class:`DownloadError` when there are none."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DownloadError(
                f"{self.url}: timed out: the download did not finish within "
                f"OMNIZOO_DOWNLOAD_TIMEOUT={self.limit:g}s ({writer.size} bytes received in "
                f"{time.monotonic() - self.start:.1f}s, retries included); the server is too "
                "slow or stalls. Raise OMNIZOO_DOWNLOAD_TIMEOUT for a slow link, or use a mirror",
                url=self.url,
            )
        return left

    def timeout(self, settings: Settings, writer: HashingWriter) -> Any:
        """The httpx timeout of the next request, cut to the time left."""
        import httpx

        left = self.remaining(writer)
        connect = min(settings.connect_timeout, left)
        read = min(settings.read_timeout, left)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


def stream_to(
    url: str,
    writer: HashingWriter,
    settings: Settings,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    validator: str | None = None,
    on_validator: Callable[[str | None, int | None], None] | None = None,
) -> dict[str, Any]:
    """Download ``url`` into ``writer`` (resuming, retrying). Returns facts about the transfer:
    ``{"resumed": int (number of Range resumes), "attempts": int, "total": int | None}``.

    ``validator``: the ETag/Last-Modified the bytes already in ``writer`` came with (an
    adopted partial); ``on_validator(validator, total)`` is told each new one (so the caller
    can record it next to the partial file).
    """
    import httpx

    client = get_client(settings)
    clock = _Clock(url, settings)
    total: int | None = None
    attempts = 0
    failures = 0
    resumed = 0
    last_error: str = ""
    while True:
        attempts += 1
        start_size = writer.size
        codings: list[str] = []
        try:
            headers: dict[str, str] = auth_headers(url, settings)
            if writer.size > 0:
                headers["Range"] = f"bytes={writer.size}-"
                if validator:
                    headers["If-Range"] = validator
            timeout = clock.timeout(settings, writer)
            with _send(client, url, headers, timeout) as response:
                total = _check_response(response, url, writer, total)
                codings = content_codings(response.headers.get("content-encoding", ""), url)
                if codings:
                    _encoded(response, writer, validator, on_validator)
                    total, validator = None, None
                if response.status_code == 206:
                    resumed += 1
                new = response.headers.get("etag") or response.headers.get("last-modified")
                if new and new.startswith("W/"):
                    new = None  # weak ETags may not be used with If-Range
                if not codings and (response.status_code == 200 or new):
                    validator = new
                    if on_validator is not None:
                        on_validator(validator, total)
                _pump(response, writer, url, total, progress, codings, clock)
            if total is not None and writer.size != total:
                raise _Retry(f"connection closed after {writer.size} of {total} bytes")
            return {"resumed": resumed, "attempts": attempts, "total": total}
        except httpx.UnsupportedProtocol as exc:
            raise DownloadError(
                f"{url}: unsupported URL scheme ({exc}); use http:// or https://, or pass a "
                "local file as checkpoint_path=",
                url=url,
            ) from None
        except (_Retry, httpx.TransportError) as exc:
            last_error = _describe(exc)
            if codings:
                writer.reset()  # decoded bytes cannot be resumed with a Range request
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict) as exc:
            # A redirect loop, an invalid (mirror) URL, a stream httpx refuses: retrying the
            # same URL will not help; the caller's mirror chain moves on to its next URL.
            raise DownloadError(f"{url}: {_describe(exc)}", url=url) from exc
        if writer.size > start_size:
            failures = 0  # progress was made: a flaky link is not a dead one
        failures += 1
        if failures >= settings.retries:
            raise DownloadError(
                f"{url}: giving up after {attempts} attempt(s) "
                f"({settings.retries} without progress): {last_error}",
                url=url,
            )
        delay = min(settings.backoff * (2 ** (failures - 1)), clock.remaining(writer))
        log.warning(
            "%s: %s; retrying in %.2gs (attempt %d/%d)",
            url,
            last_error,
            delay,
            failures + 1,
            settings.retries,
        )
        sleep(delay)


@contextlib.contextmanager
def _send(
    client: httpx.Client, url: str, headers: dict[str, str], timeout: Any
) -> Iterator[httpx.Response]:
    """``client.stream("GET", ...)``, with a URL httpx cannot even build a request for (an
    invalid port, a NUL byte, an IDNA label too long, a lone surrogate: InvalidURL or a
    ValueError/UnicodeError) turned into a :class:`DownloadError`."""
    import httpx

    try:
        request = client.build_request("GET", url, headers=headers, timeout=timeout)
    except (httpx.InvalidURL, ValueError) as exc:
        raise DownloadError(f"{url}: invalid URL ({_describe(exc)})", url=url) from exc
    try:
        response = client.send(request, stream=True)
    except UnicodeError as exc:  # the host name fails IDNA encoding only at getaddrinfo
        raise DownloadError(f"{url}: invalid host name ({_describe(exc)})", url=url) from exc
    try:
        yield response
    finally:
        response.close()


def _check_response(
    response: httpx.Response, url: str, writer: HashingWriter, total: int | None
) -> int | None:
    """Interpret the status line; returns the full size when known."""
    status = response.status_code
    if status in _NOT_FOUND:
        raise RemoteNotFoundError(
            f"{url}: HTTP {status} {response.reason_phrase}: the file is not there (or not "
            "public); retrying will not help. Check the URL, OMNIZOO_MIRRORS and HF_ENDPOINT",
            url=url,
        )
    if status >= 500 or status in (408, 429):
        raise _Retry(f"HTTP {status} {response.reason_phrase}")
    if status == 416 and writer.size > 0:
        writer.reset()  # our offset is past the end: the file changed; start over
        raise _Retry("HTTP 416 on resume; restarting from byte 0")
    if status == 206 and writer.size > 0:
        content_range = response.headers.get("content-range", "")
        start, full = _parse_content_range(content_range)
        if start != writer.size:
            writer.reset()
            raise _Retry(f"bad Content-Range {content_range!r} on resume; restarting")
        return full if full is not None else total
    if status == 200:
        if writer.size > 0:
            writer.reset()  # the server ignored Range (or the file changed): start over
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else None
    raise DownloadError(f"{url}: unexpected HTTP {status} {response.reason_phrase}", url=url)


def _parse_content_range(value: str) -> tuple[int | None, int | None]:
    # "bytes 100-199/200" or "bytes 100-199/*"
    try:
        _unit, _, rest = value.strip().partition(" ")
        span, _, full = rest.partition("/")
        start = int(span.split("-", 1)[0])
        return start, (int(full) if full.strip().isdigit() else None)
    except ValueError:
        return None, None


def _encoded(
    response: httpx.Response,
    writer: HashingWriter,
    validator: str | None,
    on_validator: Callable[[str | None, int | None], None] | None,
) -> None:
    """Prepare for an encoded body: it is decoded from byte 0, its length is unknown (the
    Content-Length counts encoded bytes), and it is never resumed."""
    if response.status_code == 206:
        writer.reset()  # a Content-Range of encoded bytes cannot continue decoded ones
        raise _Retry("an encoded partial response cannot be resumed; restarting from byte 0")
    if validator is not None and on_validator is not None:
        on_validator(None, None)  # no cross-process resume of a decoded body either


def _pump(
    response: httpx.Response,
    writer: HashingWriter,
    url: str,
    total: int | None,
    progress: Callable[[int, int | None], None] | None,
    codings: list[str] | None = None,
    clock: _Clock | None = None,
) -> None:
    """Move the body (decoded when ``codings``) into the writer in ~1 MiB batches; sniff the
    first bytes; check the deadline on every chunk."""
    sniffed = writer.size >= SNIFF_BYTES
    body: Iterator[bytes] = response.iter_raw()
    if codings:
        body = decode_body(body, codings, url)
    if writer.size == 0 and "text/html" in response.headers.get("content-type", "").lower():
        # Sniff before accepting a byte (a body shorter than SNIFF_BYTES is sniffed below).
        # One iterator for both: a second iter_raw() would raise httpx.StreamConsumed.
        first = next(body, b"")
        reject_if_not_weights(first, url)
        chunks: Iterable[bytes] = _chain(first, body)
    else:
        chunks = body
    import httpx

    batch: list[bytes] = []
    size = 0
    try:
        for chunk in chunks:
            if clock is not None:
                clock.remaining(writer)
            if not chunk:
                continue
            batch.append(chunk)
            size += len(chunk)
            if not sniffed and writer.size + size >= SNIFF_BYTES:
                reject_if_not_weights(b"".join(batch)[:SNIFF_BYTES], url)
                sniffed = True
            if size >= BATCH_BYTES:
                writer.write(batch)
                if progress is not None:
                    progress(size, total)
                batch, size = [], 0
    except httpx.TransportError:
        if batch and sniffed:  # keep what arrived before the cut: the resume starts after it
            writer.write(batch)
        raise
    if not sniffed and writer.size == 0:
        reject_if_not_weights(b"".join(batch), url)
    if batch:
        writer.write(batch)
        if progress is not None:
            progress(size, total)


def _chain(first: bytes, rest: Iterable[bytes]) -> Iterable[bytes]:
    yield first
    yield from rest


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc) or name
    if name.endswith("Timeout") or "timed out" in text.lower():
        return f"timed out ({name}: {text})"
    return text if isinstance(exc, _Retry) else f"{name}: {text}"


def describe_failures(errors: Sequence[tuple[str, BaseException]]) -> str:
    """One line per URL tried, for the final error message."""
    return "; ".join(f"{url} -> {err}" for url, err in errors)
