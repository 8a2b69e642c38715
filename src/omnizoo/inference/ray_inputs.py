"""What the Ray engine reads before it predicts: the files of a batch of paths, each one on
its own (:func:`read_inputs`: one unreadable file is one error row, never a failed run), and
the cluster an ``--address`` names (:func:`check_address`: a deadline of ours, not Ray's
minutes of retries)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..errors import ConfigurationError, ImageLoadError

__all__ = ["MAX_REMOTE_IMAGE_BYTES", "check_address", "read_inputs"]

#: The largest remote image (an ``s3://`` URI) an actor reads into memory.
MAX_REMOTE_IMAGE_BYTES = 1 << 30


def read_inputs(paths: Sequence[str]) -> list[str | bytes | ImageLoadError]:
    """What the actors predict for a batch of paths: a local path (or ``file://`` URI) as a
    path, which the Predictor opens safely itself (a missing file, a dangling link or a FIFO
    becomes its error row); another URI (``s3://``, ``gs://``) read through pyarrow's file
    systems into bytes, or an :class:`~omnizoo.errors.ImageLoadError` when it cannot be
    read. Nothing here raises for one bad input.

    >>> read_inputs(["/data/a.jpg", "file:///data/b.jpg"])
    ['/data/a.jpg', '/data/b.jpg']
    """
    out: list[str | bytes | ImageLoadError] = []
    for path in paths:
        if "://" not in path:
            out.append(path)
        elif path.startswith("file://"):
            from urllib.parse import unquote, urlparse

            out.append(unquote(urlparse(path).path))
        else:
            out.append(_read_uri(path))
    return out


def _read_uri(uri: str) -> bytes | ImageLoadError:
    try:
        from pyarrow import fs

        filesystem, where = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(where) as stream:
            data = stream.read(MAX_REMOTE_IMAGE_BYTES + 1)
    except Exception as exc:  # every file system has its own errors
        return ImageLoadError(f"{uri}: cannot read ({' '.join(str(exc).split())})", path=uri)
    if len(data) > MAX_REMOTE_IMAGE_BYTES:
        return ImageLoadError(f"{uri}: larger than {MAX_REMOTE_IMAGE_BYTES:,} bytes", path=uri)
    return bytes(data)


def check_address(address: str | None, timeout: float | None = None) -> None:
    """Reach the Ray cluster at ``address`` over TCP within ``timeout`` seconds (default
    ``OMNIZOO_RAY_CONNECT_TIMEOUT``), retrying while it refuses (a head still starting).
    ``None``, ``"auto"`` and ``"local"`` are Ray's own look-ups and pass unchecked. Raises one
    :class:`~omnizoo.errors.ConfigurationError` naming the address and the fix."""
    import socket

    from ..settings import get_settings

    if not address or address.strip().lower() in ("auto", "local"):
        return
    text = address.strip()
    bare = text.split("://", 1)[1] if "://" in text else text
    host, _, port_text = bare.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(
            f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, or ray://HOST:10001)"
        )
    limit = get_settings().ray_connect_timeout if timeout is None else timeout
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, int(port_text)), timeout=max(0.05, left)):
                return
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
        if time.monotonic() + 0.5 >= deadline:
            raise ConfigurationError(
                f"no Ray cluster answers at --address {address} (within {limit:g} s: "
                f"{reason}). Check the head's address and port (`ray status` on the head), "
                "that it is running (`ray start --head`), and that no firewall is in the way; "
                "OMNIZOO_RAY_CONNECT_TIMEOUT sets how long to try"
            )
        time.sleep(0.5)
