"""Safe extraction of downloaded tar archives (the ONNX zoo's ``*.tar.gz`` test-data bundles).

:func:`safe_extract` refuses, before writing anything, an archive with any member that could
write outside the target directory or create something other than plain files/directories:

* absolute names, drive letters, ``..`` components, NUL bytes;
* symbolic links and hard links whose target resolves outside the target directory
  (absolute link targets included);
* device files, FIFOs and other special members.

It then extracts with ``tarfile``'s ``filter="data"`` (which enforces the same rules again and
drops set-uid bits and foreign ownership) into a temporary directory beside ``dest`` and renames
that into place, so an interrupted extraction never looks complete.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import uuid
from pathlib import Path

from ..errors import IntegrityError

__all__ = ["UnsafeArchiveError", "safe_extract"]

#: Refuse archives that would expand to more than this (a decompression bomb guard).
MAX_TOTAL_BYTES = 64 * 1024**3


class UnsafeArchiveError(IntegrityError):
    """An archive member would escape the target directory or is not a plain file/dir."""


def _inside(base: str, target: str) -> bool:
    base = posixpath.normpath(base)
    target = posixpath.normpath(target)
    return target == base or target.startswith(base + "/")


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    name = member.name
    problem = None
    if "\x00" in name:
        problem = "has a NUL byte in its name"
    elif name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        problem = "has an absolute path"
    elif ".." in name.replace("\\", "/").split("/"):
        problem = "has a '..' path component"
    elif member.isdev() or member.isfifo():
        problem = "is a device file or FIFO"
    elif not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        problem = f"is a special member (type {member.type!r})"
    elif member.issym() or member.islnk():
        link = member.linkname
        if not link or link.startswith(("/", "\\")) or "\x00" in link:
            problem = f"links to an absolute path {link!r}"
        else:
            # a symlink resolves relative to its own directory; a hard link to the archive root
            start = posixpath.dirname(name) if member.issym() else ""
            resolved = posixpath.normpath(posixpath.join("root", start, link))
            if not _inside("root", resolved):
                problem = f"links outside the target directory ({link!r})"
    if problem:
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} {problem}; nothing was extracted"
        )


def safe_extract(
    tar_path: str | Path, dest: str | Path, *, max_bytes: int = MAX_TOTAL_BYTES
) -> Path:
    """Extract ``tar_path`` into ``dest`` (created; must not exist yet) and return ``dest``.

    Raises :class:`UnsafeArchiveError` (an :class:`~omnizoo.errors.IntegrityError`) if any
    member is unsafe (see the module docstring); nothing is written in that case.
    """
    tar_path = Path(tar_path)
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; extract into a new directory")
    try:
        tf = tarfile.open(tar_path, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise IntegrityError(f"{tar_path} is not a readable tar archive: {exc}") from exc
    with tf:
        members = tf.getmembers()
        total = 0
        for member in members:
            _check_member(member, str(tar_path))
            total += max(0, member.size)
        if total > max_bytes:
            raise UnsafeArchiveError(
                f"refusing to extract {tar_path}: it expands to {total} bytes (> {max_bytes})"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.extracting"
        try:
            try:
                tf.extractall(tmp, members=members, filter="data")
            except TypeError:  # pragma: no cover - Python without extraction filters
                tf.extractall(tmp, members=members)
            except tarfile.FilterError as exc:
                raise UnsafeArchiveError(
                    f"refusing to extract {tar_path}: {exc}; nothing was kept"
                ) from exc
            # belt and braces: nothing outside tmp, no link pointing out of it
            root = tmp.resolve()
            for path in tmp.rglob("*"):
                if path.is_symlink() and not _inside(str(root), str(path.resolve())):
                    raise UnsafeArchiveError(
                        f"refusing {tar_path}: {path.relative_to(tmp)} points outside"
                    )
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest
