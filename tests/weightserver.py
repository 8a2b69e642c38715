"""A real threaded HTTP server on 127.0.0.1 for the weights tests, with injectable faults.

It serves byte strings (or files, via sendfile) with Range support, and for each path can:
cut the connection after N bytes (the first k times), answer 500 k times, serve wrong bytes,
an HTML page or a Git-LFS pointer, answer 404/403/410, be slow, or ignore Range, add headers
(the Hub's ``X-Linked-Etag``/``X-Linked-Size``/``X-Repo-Commit``). It answers HEAD like GET
without the body. It can also lie the way a hostile mirror or a broken proxy does: redirect
(to itself, for a loop; the Hub redirects to its CDN), send the right bytes labelled
``Content-Type: text/html``, compress the body and say so with ``Content-Encoding`` (gzip,
deflate, or any label over the raw bytes), or trickle the body a byte at a time. It counts
requests, HEADs and body downloads per path (``tests/hubfiles.py`` builds Hub-like
repositories on it). ``GET /__stats__`` returns the counters as JSON, so a server in another
process (the benchmark) can be asked too.

The ``weight_server`` fixture is imported into conftest.py, so every test can use it::

    def test_x(weight_server):
        url = weight_server.add("/m/resnet-abcdef12.pth", data)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

__all__ = ["Route", "WeightServer", "weight_server"]

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body>Please sign in to download this file.</body></html>\n"
)
LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)


@dataclass
class Route:
    """What one path serves and which faults it injects."""

    data: bytes | None = None
    file: Path | None = None
    status: int | None = None  # e.g. 404/403/410: answer this and nothing else
    fail_500: int = 0  # answer 500 this many times first
    cut_at: int | None = None  # close the connection after this many body bytes ...
    cut_times: int = 1  # ... on this many responses
    wrong_bytes: bool = False  # serve the data with some bytes flipped
    html: bool = False  # serve an HTML page instead
    lfs: bool = False  # serve a Git-LFS pointer instead
    delay: float = 0.0  # sleep before sending the body
    pause_at: int | None = None  # send this many bytes, then sleep `pause` seconds, then the rest
    pause: float = 0.0
    ignore_range: bool = False  # always answer 200 with the whole body
    etag: str | None = '"v1"'
    headers: dict[str, str] = field(default_factory=dict)  # sent on every answer (GET, HEAD)
    content_type: str = "application/octet-stream"
    # answer 302 with this Location (a path or a full URL; with `headers`, like the Hub)
    redirect: str | None = None
    encoding: str | None = None  # "gzip"/"deflate": send the body compressed; else a bare label
    compress: bool = True  # False: send the data as it is under the encoding label
    trickle: float = 0.0  # seconds between single bytes of the body
    # answer 401 to a GET/HEAD whose Authorization header is not this (a gated Hub repo)
    require_auth: str | None = None
    # counters
    heads: int = 0
    requests: int = 0
    bodies: int = 0  # responses that started sending the body from byte 0
    range_requests: int = 0
    bytes_sent: int = 0
    inflight: int = 0  # requests whose handler has not finished (counters not final yet)
    auth_seen: list[str | None] = field(default_factory=list)  # Authorization of each request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no handler of this route is still running, so that the counters are
        final: a client can read the last byte before the handler's write() returns."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.inflight == 0:
                    return
            time.sleep(0.005)

    @property
    def size(self) -> int:
        if self.file is not None:
            return self.file.stat().st_size
        return len(self.data or b"")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        if self.path == "/__stats__":
            body = json.dumps(self.server.owner.stats()).encode()
            self._head(200, len(body), "application/json")
            self.wfile.write(body)
            return
        route = self.server.owner.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._error(404)
            return
        with route.lock:
            route.inflight += 1
        try:
            self._serve(route)
        finally:
            with route.lock:
                route.inflight -= 1

    def do_HEAD(self) -> None:
        route = self.server.owner.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._head(404, 0, "text/plain")
            return
        with route.lock:
            route.heads += 1
            route.auth_seen.append(self.headers.get("Authorization"))
            fail = route.fail_500 > 0
            if fail:
                route.fail_500 -= 1
        if not self._authorized(route):
            self._head(401, 0, "text/plain")
            return
        if route.status is not None or fail:
            self._head(route.status or 500, 0, "text/plain")
            return
        self.send_response(302 if route.redirect else 200)
        if route.redirect:
            self.send_header("Location", route.redirect)
            self.send_header("Content-Length", "0")
        else:
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(route.size))
            if route.etag:
                self.send_header("ETag", route.etag)
        for key, value in route.headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _authorized(self, route: Route) -> bool:
        """False when the route is gated and the request lacks its Authorization header."""
        wanted = route.require_auth
        return wanted is None or self.headers.get("Authorization") == wanted

    def _serve(self, route: Route) -> None:
        with route.lock:
            route.requests += 1
            route.auth_seen.append(self.headers.get("Authorization"))
            fail = route.fail_500 > 0
            if fail:
                route.fail_500 -= 1
        if not self._authorized(route):
            self._error(401)
            return
        if route.status is not None:
            self._error(route.status)
            return
        if fail:
            self._error(500)
            return
        if route.redirect is not None:
            self.send_response(302)
            self.send_header("Location", route.redirect)
            self.send_header("Content-Length", "0")
            for key, value in route.headers.items():
                self.send_header(key, value)
            self.end_headers()
            return
        if route.html or route.lfs:
            body = HTML_PAGE if route.html else LFS_POINTER
            self._head(200, len(body), "text/html" if route.html else "text/plain")
            self.wfile.write(body)
            with route.lock:
                route.bodies += 1
            return
        if route.encoding is not None or route.trickle:
            self._serve_lie(route)
            return
        size = route.size
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and not route.ignore_range and (if_range is None or if_range == route.etag):
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= size:
                self._error(416)
                return
            status = 206
        with route.lock:
            if status == 206:
                route.range_requests += 1
            else:
                route.bodies += 1
            cut = route.cut_at is not None and route.cut_times > 0
            if cut:
                route.cut_times -= 1
        self.send_response(status)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if route.etag:
            self.send_header("ETag", route.etag)
        for key, value in route.headers.items():
            self.send_header(key, value)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if route.delay:
            time.sleep(route.delay)
        end = size
        if cut:
            assert route.cut_at is not None
            end = max(start, min(size, route.cut_at))
        if route.pause_at is not None and start < route.pause_at < end:
            sent = self._send_body(route, start, route.pause_at)
            self.wfile.flush()
            time.sleep(route.pause)
            sent += self._send_body(route, route.pause_at, end)
        else:
            sent = self._send_body(route, start, end)
        with route.lock:
            route.bytes_sent += sent
        if cut:
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _serve_lie(self, route: Route) -> None:
        """An encoded and/or trickled body (whole, 200; Range is honoured on the encoded bytes
        as RFC 9110 says, which is exactly why a client cannot resume a decoded stream)."""
        import gzip
        import zlib

        data = route.data if route.data is not None else route.file.read_bytes()  # type: ignore[union-attr]
        if route.compress and route.encoding in ("gzip", "x-gzip"):
            data = gzip.compress(data)
        elif route.compress and route.encoding == "deflate":
            data = zlib.compress(data)
        with route.lock:
            route.bodies += 1
            cut = route.cut_at is not None and route.cut_times > 0
            if cut:
                route.cut_times -= 1
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(data)))
        if route.encoding is not None:
            self.send_header("Content-Encoding", route.encoding)
        if route.etag:
            self.send_header("ETag", route.etag)
        self.end_headers()
        length = len(data)
        if cut:
            assert route.cut_at is not None
            data = data[: route.cut_at]
        try:
            if route.trickle:
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(route.trickle)
            else:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            return
        with route.lock:
            route.bytes_sent += len(data)
        if cut and len(data) < length:
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send_body(self, route: Route, start: int, end: int) -> int:
        if route.file is not None and not route.wrong_bytes:
            self.wfile.flush()
            with open(route.file, "rb") as f:
                try:
                    return self.connection.sendfile(f, start, end - start) or 0
                except (BrokenPipeError, ConnectionResetError):
                    return 0
        data = route.data if route.data is not None else route.file.read_bytes()  # type: ignore[union-attr]
        if route.wrong_bytes:
            flipped = bytearray(data)
            for i in range(0, len(flipped), 4096):
                flipped[i] ^= 0xFF
            data = bytes(flipped)
        try:
            self.wfile.write(data[start:end])
        except (BrokenPipeError, ConnectionResetError):
            return 0
        return end - start

    def _head(self, status: int, length: int, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _error(self, status: int) -> None:
        body = f"error {status}\n".encode()
        self._head(status, len(body), "text/plain")
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping in a "pause" fault must not delay teardown
    allow_reuse_address = True
    request_queue_size = 64
    owner: WeightServer

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class WeightServer:
    """The server plus its routes. ``add`` returns the full URL of a path."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.routes: dict[str, Route] = {}
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WeightServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, path: str, data: bytes | None = None, **faults: object) -> str:
        """Serve ``data`` (or ``file=Path``) at ``path`` with the given faults; returns its URL."""
        self.routes[path] = Route(data=data, **faults)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path_or_url: str) -> Route:
        """The route for a path or URL, once its running handlers have finished."""
        route = self.routes[path_or_url.removeprefix(self.base)]
        route.settle()
        return route

    def stats(self) -> dict[str, dict[str, int]]:
        for r in list(self.routes.values()):
            r.settle()
        return {
            path: {
                "requests": r.requests,
                "heads": r.heads,
                "bodies": r.bodies,
                "range_requests": r.range_requests,
                "bytes_sent": r.bytes_sent,
            }
            for path, r in self.routes.items()
        }


def serve_forever(directory: str, port_file: str, **faults: object) -> None:
    """Serve every file of ``directory`` at ``/<name>`` (for a server in another process)."""
    server = WeightServer()
    for name in sorted(os.listdir(directory)):
        server.routes["/" + name] = Route(file=Path(directory, name), **faults)  # type: ignore[arg-type]
    server.start()
    Path(port_file + ".tmp").write_text(str(server.port))
    os.replace(port_file + ".tmp", port_file)
    threading.Event().wait()


@pytest.fixture
def weight_server() -> Iterator[WeightServer]:
    """A fresh loopback weights server for one test."""
    server = WeightServer().start()
    try:
        yield server
    finally:
        server.stop()
