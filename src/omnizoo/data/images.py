"""Loading real-world image files into clean RGB PIL images, one clear error per bad file.

:func:`load_image` decodes a path, bytes or a file object and returns an ``RGB`` PIL image:

* **EXIF orientation** is applied (a phone photo taken upright comes out upright);
* **grayscale** (``L``, ``1``) is replicated to three channels;
* **transparency** (``RGBA``, ``LA``, ``PA``, palette images with a transparent colour) is
  composited over **white**. Dropping the alpha channel instead would expose whatever colour
  the encoder left under fully transparent pixels (often black or noise); white is what a
  viewer shows on a page, and what most product/logo images with transparent backgrounds are
  meant to be seen on;
* **palette** (``P``) and **CMYK** / **YCbCr** images are converted by Pillow;
* **16-bit** images (``I;16*``, ``I``) are scaled to 8 bits by ``round(v / 257)``, which maps
  0..65535 onto 0..255 exactly at both ends (a plain ``convert("L")`` would clip everything
  above 255 to white); 32-bit float (``F``) images are taken as 0-1 when their maximum is at
  most 1, else as 0-255.

Failures raise :class:`~omnizoo.errors.ImageLoadError` naming the file and the cause: a
missing, unreadable, corrupt or truncated file, an unknown format, a FIFO, device or
directory (refused after a ``stat``, never opened, so nothing blocks), any exception a Pillow
decoder raises on damaged input, or a **decompression bomb** —
an image with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's own limit, which it
only warns about up to twice that size; omnizoo refuses from the limit on, before decoding).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from ..errors import ImageLoadError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ImageSource", "describe_source", "load_image", "to_rgb"]

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]


def describe_source(source: Any) -> str:
    """A short name for an image source, for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    return f"<{type(source).__name__}>"


def load_image(
    source: ImageSource, *, max_pixels: int | None = -1, draft: tuple[int, int] | None = None
) -> PILImage.Image:
    """Decode ``source`` (path, bytes or binary file object) into an RGB PIL image.

    ``max_pixels``: refuse larger images (default ``PIL.Image.MAX_IMAGE_PIXELS``; ``None``:
    no omnizoo limit, though Pillow itself still refuses twice its ``MAX_IMAGE_PIXELS``).
    ``draft``: let the JPEG decoder downscale by a power of two to at least this (width,
    height) while decoding — much faster for large photos, but the pixels then differ from a
    full decode followed by the reference resize, so it is off by default.

    Every failure is an :class:`~omnizoo.errors.ImageLoadError` naming the source and the
    cause. A path must be a regular file (a symlink to one is fine): a FIFO, a device or a
    directory is refused after a ``stat``, without opening it, so nothing blocks.
    """
    name = describe_source(source)
    limit = _pixel_limit(max_pixels)
    if isinstance(source, (str, os.PathLike)):
        with _open_regular_file(source, name) as fp:
            return _decode(fp, name, limit, draft)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(source)), name, limit, draft)
    return _decode(source, name, limit, draft)


def _pixel_limit(max_pixels: int | None) -> int | None:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS if max_pixels == -1 else max_pixels


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(name: str, mode: int) -> ImageLoadError:
    kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
    return ImageLoadError(f"{name}: {kind}, not an image file; refused unread", path=name)


@contextlib.contextmanager
def _open_regular_file(path: str | os.PathLike[str], name: str) -> Iterator[IO[bytes]]:
    """The open file, if ``path`` is a regular file: ``stat`` first (a FIFO would block an
    ``open``), then ``O_NONBLOCK`` and a second check on the descriptor, in case the path was
    swapped for a FIFO in between."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(name, st.st_mode)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{name}: no such file", path=name) from exc
    except OSError as exc:
        raise ImageLoadError(f"{name}: cannot open ({exc.strerror or exc})", path=name) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(name, mode)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fp:
        yield fp


def _decode(
    fp: IO[bytes], name: str, limit: int | None, draft: tuple[int, int] | None
) -> PILImage.Image:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        img = Image.open(fp)
        width, height = img.size
        if limit is not None and width * height > limit:
            raise ImageLoadError(
                f"{name}: {width}x{height} = {width * height} pixels is over the limit of "
                f"{limit} (PIL.Image.MAX_IMAGE_PIXELS); refused as a possible decompression "
                "bomb. Raise PIL.Image.MAX_IMAGE_PIXELS if the image is trusted.",
                path=name,
            )
        if draft is not None and img.format == "JPEG":
            img.draft("RGB", draft)
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: refused as a decompression bomb ({exc})", path=name) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"{name}: not an image Pillow can read (corrupt file or unknown format)", path=name
        ) from exc
    except MemoryError as exc:
        raise ImageLoadError(f"{name}: too large to decode in memory", path=name) from exc
    except Exception as exc:
        # Pillow's decoders raise a wide, undocumented range of exceptions on damaged input:
        # OSError("image file is truncated"), SyntaxError for broken headers, ValueError,
        # EOFError, TypeError, NotImplementedError, struct.error, IndexError, KeyError ...
        # (a fuzz test found most of them). Whatever comes out of decoding one file is that
        # file's failure, reported with its name and cause.
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ImageLoadError(f"{name}: cannot decode ({cause})", path=name) from exc


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """Any PIL image -> RGB, following the rules in the module docstring."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode == "PA":
        img = img.convert("RGBA")
        mode = img.mode
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        return _high_bit_depth_to_rgb(img)
    if mode == "F":
        return _float_to_rgb(img)
    if mode == "L" and "transparency" in img.info:
        return to_rgb(img.convert("LA"))
    return img.convert("RGB")


def _high_bit_depth_to_rgb(img: PILImage.Image) -> PILImage.Image:
    import numpy as np
    from PIL import Image

    arr = np.asarray(img).astype(np.float64)
    if img.mode == "I" and arr.size and arr.max() <= 255 and arr.min() >= 0:
        eight = arr  # an 8-bit image stored in a 32-bit container
    else:
        eight = np.clip(np.rint(arr / 257.0), 0, 255)
    return Image.fromarray(eight.astype(np.uint8), mode="L").convert("RGB")


def _float_to_rgb(img: PILImage.Image) -> PILImage.Image:
    import numpy as np
    from PIL import Image

    arr = np.asarray(img).astype(np.float64)
    scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
    eight = np.clip(np.rint(np.nan_to_num(arr) * scale), 0, 255)
    return Image.fromarray(eight.astype(np.uint8), mode="L").convert("RGB")
