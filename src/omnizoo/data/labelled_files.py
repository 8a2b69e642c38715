"""The small file rules shared by the labelled-set readers (:mod:`omnizoo.data.labelled`,
:mod:`omnizoo.data.labelled_imagenet`): which names are images, whether a path stays inside
its root, reading a user's list file under a cap, and the error for one bad row."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigurationError, MetadataError

__all__ = [
    "IMG_EXTENSIONS",
    "MAX_LIST_BYTES",
    "inside",
    "is_image_name",
    "read_list_text",
    "row_error",
]

#: torchvision's ``datasets.folder.IMG_EXTENSIONS`` (compared lower-case), so a tree that
#: ``ImageFolder`` reads is read here image for image.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: The largest list (CSV/JSONL of images, ground-truth file) read: 1.28M rows of ~200 bytes.
MAX_LIST_BYTES = 256 << 20


def is_image_name(name: str) -> bool:
    """Whether a file name has one of torchvision's image extensions."""
    return name.lower().endswith(IMG_EXTENSIONS)


def inside(path: Path, root_real: str) -> bool:
    """Whether ``path`` (following every symlink) is ``root_real`` or inside it."""
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def read_list_text(path: Path, what: str) -> str:
    """A user's list file, size-capped (refused before reading when larger) and UTF-8."""
    from ..weights import fsafe

    where = os.fspath(path)
    try:
        if path.stat().st_size > MAX_LIST_BYTES:  # refused before a byte is read
            raise MetadataError(where, None, f"larger than {MAX_LIST_BYTES:,} bytes; not read")
        data = fsafe.read_input(path, MAX_LIST_BYTES)
    except FileNotFoundError:
        raise ConfigurationError(f"{where}: no such {what}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetadataError(where, None, f"not UTF-8 text (byte {exc.start})") from None


def row_error(path: Path, line: int, problem: str) -> MetadataError:
    """The error for one bad row: the file, the line, what is wrong and how to fix it."""
    return MetadataError(f"{os.fspath(path)} line {line}", None, problem)
