"""``Content-Encoding`` of a weights response: decoded before it is hashed, or refused.

omnizoo asks for ``Accept-Encoding: identity``, but a proxy or a lying mirror may compress
the body anyway. The hash, the size and the cache entry are always those of the *file*, so:

* ``gzip`` / ``x-gzip`` / ``deflate`` (zlib-wrapped or raw, as servers disagree), alone or
  stacked (``gzip, gzip``), are decoded in bounded steps (at most ~1 MiB of output per call,
  so a small "zip bomb" body cannot allocate gigabytes at once), and the decoded bytes are
  what is verified and cached; a body that does not decode, or ends mid-stream, raises
  :class:`DownloadError`;
* anything else (``br``, ``zstd``, ``compress``, an unknown token) raises
  :class:`DownloadError` naming the encoding: its bytes could not be verified;
* an encoded response is never resumed with ``Range`` (ranges count encoded bytes) and never
  recorded for a cross-process resume; a cut restarts it from byte 0.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from ..errors import DownloadError

__all__ = ["content_codings", "decode_body"]

_SUPPORTED = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 0}
OUT_BYTES = 1 << 20


def content_codings(header: str, url: str) -> list[str]:
    """The non-identity codings of a ``Content-Encoding`` header, in the order applied;
    :class:`DownloadError` for one this module cannot decode."""
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    unsupported = [c for c in codings if c not in _SUPPORTED]
    if unsupported:
        raise DownloadError(
            f"{url}: the server sent Content-Encoding: {header.strip()} although omnizoo asked "
            f"for identity; {', '.join(unsupported)} cannot be decoded here, so the file cannot "
            "be verified (nothing was cached). Fix the server or proxy, or use another mirror",
            url=url,
        )
    return codings


class _Inflater:
    """One coding's decoder (``zlib`` with the right window bits), in bounded steps."""

    def __init__(self, coding: str, url: str) -> None:
        self.coding = coding
        self.url = url
        self.wbits = _SUPPORTED[coding]
        self.started = False
        self.obj = zlib.decompressobj(self.wbits or zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            if not self.started and self.wbits == 0 and data:
                self.started = True
                try:  # "deflate" should be zlib-wrapped; some servers send raw deflate
                    probe = zlib.decompressobj(zlib.MAX_WBITS)
                    probe.decompress(data[:2])
                except zlib.error:
                    self.obj = zlib.decompressobj(-zlib.MAX_WBITS)
            while data:
                if self.obj.eof:  # another gzip member follows (concatenated gzip)
                    self.obj = zlib.decompressobj(self.wbits or zlib.MAX_WBITS)
                out = self.obj.decompress(data, OUT_BYTES)
                data = self.obj.unused_data if self.obj.eof else self.obj.unconsumed_tail
                if out:
                    yield out
        except zlib.error as exc:
            raise self._error(f"does not decode ({exc})") from None

    def finish(self) -> Iterator[bytes]:
        try:
            while tail := self.obj.flush(OUT_BYTES):
                yield tail
        except zlib.error as exc:
            raise self._error(f"does not decode ({exc})") from None
        if not self.obj.eof:
            raise self._error("ends before its compressed stream does")

    def _error(self, what: str) -> DownloadError:
        return DownloadError(
            f"{self.url}: the {self.coding}-encoded body {what}; nothing was cached", url=self.url
        )


def decode_body(chunks: Iterable[bytes], codings: list[str], url: str) -> Iterator[bytes]:
    """The decoded bytes of an encoded body (``codings`` in the order the server applied)."""
    stream: Iterable[bytes] = chunks
    for coding in reversed(codings):  # the last coding applied is undone first
        stream = _stage(stream, _Inflater(coding, url))
    return iter(stream)


def _stage(source: Iterable[bytes], inflater: _Inflater) -> Iterator[bytes]:
    for chunk in source:
        yield from inflater.feed(chunk)
    yield from inflater.finish()
