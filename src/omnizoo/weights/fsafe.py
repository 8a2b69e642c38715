"""The one safe way omnizoo opens a file: inside ``OMNIZOO_HOME`` and for every user input.

Every input is opened through :func:`open_regular` / :func:`read_regular`: a regular file
only (a FIFO, device, socket or directory is refused without blocking), and whatever is read
whole is size-capped. Inputs the user names (a label file, a saved folder's card.json, an
.onnx file, an output being resumed) may be symlinks the user made on purpose, so those
callers pass ``follow=True``; inside the cache a symlink is never followed.

The cache may be shared (a team directory, a copied or mounted cache), so any entry in it may
have been planted by someone else: a symlink in ``tmp/`` posing as a dead process's partial
download, a symlink in ``blobs/`` pointing at a user's own file, a FIFO that blocks every
reader. The helpers here make sure omnizoo only ever reads, writes, hashes or chmods the
directory entry itself, and only when it is a regular file:

* :func:`open_regular` opens with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink fails with ``ELOOP``;
  a FIFO or device opens at once instead of blocking) and checks ``S_ISREG`` on the open file
  descriptor, so a swap between a check and the open cannot fool it;
* :func:`create_new` creates with ``O_CREAT | O_EXCL | O_NOFOLLOW``: it never truncates or
  writes through an existing entry, and the mode it asks for is filtered by the process umask;
* :func:`write_atomic` writes a small file through a fresh temp file and a rename (the name of
  the temp file records host and PID, so ``cache prune`` can tell a live writer's file from a
  dead one's);
* :func:`remove` unlinks the entry itself (a symlink's target is never touched, not even
  chmod-ed), and :func:`make_readonly` drops write bits with ``fchmod`` on an open descriptor.

:func:`is_readonly_error` recognises the errors of a read-only cache (a read-only mount, or
a directory the user may not write), which the cache tolerates where it only records metadata.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from pathlib import Path

__all__ = [
    "HOST",
    "NotRegularFileError",
    "create_new",
    "drop_non_file",
    "hash_regular",
    "is_readonly_error",
    "lock_file_mode",
    "lstat_regular",
    "make_readonly",
    "open_regular",
    "read_input",
    "read_regular",
    "remove",
    "temp_owner",
    "write_atomic",
]


def _hostname() -> str:
    # os.uname() is gethostname() on POSIX without importing socket (~2 ms of every
    # get_card in a fresh process); socket only where there is no uname (Windows)
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


HOST = _hostname().replace(".", "_") or "host"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_READONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class NotRegularFileError(OSError):
    """A cache entry that is a directory, FIFO, device or socket where a file was expected."""


def open_regular(
    path: str | os.PathLike[str], flags: int = os.O_RDONLY, *, follow: bool = False
) -> int:
    """Open ``path`` and return the descriptor when it is a regular file, or raise.

    Raises ``OSError`` (``ELOOP``) for a symlink unless ``follow`` (then the link's target
    must be a regular file), :class:`NotRegularFileError` for anything but a regular file,
    ``FileNotFoundError`` when it is missing. A FIFO is opened non-blocking, so this never
    hangs.
    """
    nofollow = 0 if follow else _NOFOLLOW
    fd = os.open(path, flags | nofollow | _NONBLOCK | _CLOEXEC | _BINARY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], limit: int, *, follow: bool = False) -> bytes:
    """The bytes of a small regular file; ``ValueError`` over ``limit`` bytes.

    No symlink is followed unless ``follow`` (see :func:`open_regular`).
    """
    fd = open_regular(path, follow=follow)
    try:
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size > limit:
                raise ValueError(f"{os.fspath(path)} is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_input(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a file the user named (a label file, a card.json, an output being resumed).

    A symlink the user made is followed; the file itself must be regular and at most
    ``limit`` bytes. Anything else is one :class:`~omnizoo.errors.MetadataError` naming the
    path (``FileNotFoundError`` stays itself)::

        >>> read_input("/dev/zero", 10)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        omnizoo.errors.MetadataError: /dev/zero: not a regular file (a FIFO, device, ...
    """
    from ..errors import MetadataError

    where = os.fspath(path)
    try:
        return read_regular(path, limit, follow=True)
    except FileNotFoundError:
        raise
    except (NotRegularFileError, IsADirectoryError):
        raise MetadataError(
            where, None, "not a regular file (a FIFO, device, socket or directory); give a file"
        ) from None
    except ValueError:
        raise MetadataError(where, None, f"larger than {limit:,} bytes; not read") from None
    except OSError as exc:
        raise MetadataError(where, None, f"cannot be read: {exc.strerror or exc}") from None


def hash_regular(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> tuple[str, int]:
    """``(sha256 hex, size)`` of a regular file, read without following a symlink."""
    fd = open_regular(path)
    try:
        h = hashlib.sha256()
        size = 0
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
                size += n
        return h.hexdigest(), size
    finally:
        os.close(fd)


def lstat_regular(path: str | os.PathLike[str]) -> os.stat_result | None:
    """``lstat`` of ``path`` when it is a regular file; None when missing or anything else."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def create_new(path: str | os.PathLike[str], mode: int = 0o666) -> int:
    """Create ``path`` (which must not exist, not even as a dangling symlink) for writing.

    ``mode`` is filtered by the umask, as for any new file, so a cache shared with a group
    (umask 002) stays group-readable.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
    return os.open(path, flags, mode)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a fresh temp file beside it, then ``os.replace``.

    A symlink at ``path`` is replaced, never written through. The temp file is named
    ``.<name>.<host>.<pid>.<rand>.tmp`` (see :func:`temp_owner`).
    """
    tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = create_new(tmp)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def temp_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a :func:`write_atomic` temp file name, or None if not one."""
    parts = name.rsplit(".", 4)
    if len(parts) != 5 or parts[4] != "tmp" or not parts[0].startswith("."):
        return None
    try:
        return parts[1], int(parts[2])
    except ValueError:
        return None


def remove(path: str | os.PathLike[str]) -> bool:
    """Unlink the entry ``path`` itself (a symlink, never its target); False if missing."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except PermissionError:
        if os.name != "nt":
            raise
        # Windows refuses to delete a read-only file; clear the flag on the entry (after
        # an lstat, so that a link's target is never changed) and try again.
        if lstat_regular(path) is None:
            raise
        os.chmod(path, stat.S_IWRITE)
        os.unlink(path)
    return True


def drop_non_file(path: str | os.PathLike[str]) -> None:
    """Unlink whatever non-file (a symlink, a FIFO) was planted where a regular file of the
    cache belongs; a directory stays (the caller's own open then reports it)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(st.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(path)


def lock_file_mode(path: str | os.PathLike[str]) -> int:
    """The ``mode=`` to give ``filelock.FileLock(path)``: the mode of the lock file, created
    here (after :func:`drop_non_file`) when missing, so the umask decides it.

    filelock 3.13 (the floor) chmods the lock file to its ``mode`` argument (default 0o644)
    whatever the umask (filelock 4 keeps the umask's): a cache shared with a group (umask 002)
    could not be locked by the others, one under umask 077 got world-readable lock files.
    Given the file's own mode, every filelock version leaves it as created. 0o644 (filelock's
    old default) where it cannot be created (a read-only cache: the lock fails there anyway)."""
    drop_non_file(path)
    flags = os.O_RDONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        return 0o644
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def make_readonly(fd: int) -> int:
    """Drop every write bit of the open file ``fd`` (``fchmod``, so no path is followed);
    the read bits the umask gave it stay. Returns the new mode."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode) & 0o444
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    return mode


def is_readonly_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) says the cache cannot be written here: a read-only
    filesystem or a directory this user may not write."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _READONLY_ERRNOS:
            return True
        seen = seen.__cause__
    return False
