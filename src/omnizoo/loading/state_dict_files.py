"""Reading checkpoint files safely (:func:`read_checkpoint`, :func:`load_checkpoint`); the state
dict inside one is found by :mod:`omnizoo.loading.unwrap`.

Nothing here unpickles arbitrary objects unless ``OMNIZOO_TRUST_PICKLE=1`` *and* the file was
verified by hash (``verified=True``, which callers set only for a download whose state is
pinned, origin or prefix; the default is False). A caller's ``trust=[...]`` allows the named
globals only, still under ``weights_only=True`` (:mod:`omnizoo.loading.trust`). Every malformed
file is a :class:`~omnizoo.errors.CheckpointError` naming the path and the cause, never a raw
KeyError/UnpicklingError/zipfile error; the reader is chosen by content, not by file name.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UnsafeCheckpointError
from .trust import refusal_hint, refused_globals, trusted_globals
from .unwrap import clean_state_dict, unwrap_checkpoint

__all__ = ["load_checkpoint", "read_checkpoint", "sniff_format"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: File name suffixes that declare a format; content that disagrees is refused.
_SUFFIX_FORMATS = {".safetensors": "safetensors", ".npz": "npz"}
_FORMAT_NAMES = {
    "safetensors": "a safetensors file",
    "npz": "an .npz archive",
    "pickle": "a torch.save file (pickle)",
}


# ----------------------------------------------------------------------------- reading files
def sniff_format(path: Path) -> str:
    """``safetensors``, ``zip`` (torch.save / .npz), ``legacy-pickle`` or ``unknown``."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    return _kind(head)


def _kind(head: bytes) -> str:
    from ..weights.hashing import container_of

    found = container_of(head)
    if found == "pickle":
        return "legacy-pickle"  # a bare pickle stream (torch < 1.6 files)
    return found if found in ("zip", "safetensors") else "unknown"


def _what(path: Path) -> str:
    """The path, and where it leads when it is a symlink (``x.pth -> /etc/passwd``)."""
    if path.is_symlink():
        with contextlib.suppress(OSError):
            return f"{path} (a symlink to {path.resolve()})"
    return str(path)


def _open_regular(path: Path) -> tuple[str, bytes, int]:
    """``(what, first bytes, size)`` of a regular file; :class:`CheckpointError` for a missing
    path, a directory, a FIFO or device (never opened: that could block), or an empty file."""
    import stat

    what = _what(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {what}") from None
    except OSError as exc:
        raise CheckpointError(
            f"{what}: cannot read the checkpoint: {exc.strerror or exc}"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(
            f"{what} is a directory, not a checkpoint file (give the file inside it)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{what} is not a regular file (a FIFO, socket or device)")
    if st.st_size == 0:
        raise CheckpointError(f"{what} is empty (0 bytes), not a checkpoint")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise CheckpointError(
            f"{what}: cannot read the checkpoint: {exc.strerror or exc}"
        ) from None
    return what, head, st.st_size


def _not_a_checkpoint(what: str, head: bytes) -> CheckpointError:
    from ..weights.hashing import detect_format, sniff

    found = detect_format(head)
    page = sniff(head)
    if found == "onnx":
        cause = "an ONNX model, not a torch checkpoint (load it with the onnx source)"
    elif page is not None:
        cause = f"{page}, not a checkpoint"
    else:
        sample = head[:32]
        printable = all(32 <= b < 127 or b in b"\t\r\n" for b in sample)
        cause = (
            f"a text file, not a checkpoint (it starts with {sample.decode('ascii')[:24]!r})"
            if printable
            else f"not a checkpoint (unknown content starting with {sample[:8].hex()})"
        )
    return CheckpointError(
        f"{what} is {cause}; expected safetensors, a torch.save file or an .npz archive"
    )


def _zip_kind(path: Path, what: str) -> str:
    """``npz`` or ``torch`` from a zip archive's member names (its central directory)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{what} is a truncated or damaged zip archive: {exc}") from None
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    raise CheckpointError(
        f"{what} is a zip archive but neither a torch.save file nor an .npz archive "
        f"(members: {shown or 'none'})"
    )


def read_checkpoint(
    path: str | Path,
    *,
    verified: bool = False,
    mmap: bool = True,
    trust_pickle: bool | None = None,
    trust: Iterable[Any] | str | None = None,
) -> Any:
    """Read a checkpoint file safely and return what it holds (usually a dict).

    The reader follows the content, not the file name:

    * safetensors -> safetensors (no code can run);
    * a torch.save file (zip or legacy pickle) -> ``torch.load(weights_only=True)``
      (memory-mapped when the file allows);
    * an ``.npz`` archive (a zip of ``.npy`` members) -> ``numpy.load(allow_pickle=False)`` as
      a dict of tensors.

    A torch file that needs arbitrary unpickling raises :class:`UnsafeCheckpointError` and runs
    nothing, unless ``trust_pickle`` (default: ``OMNIZOO_TRUST_PICKLE``) is set *and*
    ``verified`` is True (the bytes matched a sha256 known before they were downloaded:
    pinned, origin or prefix; see :mod:`omnizoo.weights.verification`). ``trust`` names the
    globals a trusted training checkpoint may build besides tensors (``["argparse.Namespace"]``
    for timm's train.py), still under ``weights_only=True`` (:mod:`omnizoo.loading.trust`);
    the refusal names every global the file needs and the ``trust=[...]`` that loads it.
    Anything else that is not a readable checkpoint (a directory, a FIFO, an empty, text or
    truncated file, a lying header) is a :class:`CheckpointError` naming the path and the cause.
    """
    path = Path(path)
    allowed = trusted_globals(trust)
    what, head, size = _open_regular(path)
    if trust_pickle is None:
        from ..settings import get_settings

        trust_pickle = get_settings().trust_pickle
    kind = _kind(head)
    if kind == "unknown":
        raise _not_a_checkpoint(what, head)
    found = {"safetensors": "safetensors", "legacy-pickle": "pickle"}.get(kind)
    if found is None:
        found = "npz" if _zip_kind(path, what) == "npz" else "pickle"
    declared = _SUFFIX_FORMATS.get(path.suffix.lower())
    if declared is not None and declared != found:
        # A name that promises a safe format over pickle content is a mistake or a trap.
        raise CheckpointError(
            f"{what} is named {path.suffix} but holds {_FORMAT_NAMES[found]}; rename it to "
            "match its content (or re-save it) if you trust it"
        )
    if found == "safetensors":
        return _read_safetensors(path, what, head, size)
    if found == "npz":
        return _read_npz(path, what)
    zipped = kind == "zip"
    try:
        return _torch_load(path, weights_only=True, mmap=mmap and zipped, allowed=allowed)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if trust_pickle and verified:
            try:
                return _torch_load(path, weights_only=False, mmap=mmap and zipped)
            except Exception as full:
                raise _unreadable(what, full) from full
        if not _needs_unsafe(reason):
            raise CheckpointError(
                f"{what} is not a readable torch checkpoint (a damaged pickle stream: {reason})"
            ) from None
        raise _refusal(path, what, reason, allowed, verified, trust_pickle) from None
    except Exception as exc:
        raise _unreadable(what, exc) from exc


def _refusal(
    path: Path,
    what: str,
    reason: str,
    allowed: tuple[Any, ...],
    verified: bool,
    trust_pickle: bool,
) -> UnsafeCheckpointError:
    """The whole story of a refused pickle: every global it needs, and what loads it."""
    refused = refused_globals(path, reason)
    if trust_pickle:  # the variable is set, but it cannot apply here
        note = (
            " (OMNIZOO_TRUST_PICKLE=1 only applies to files verified by hash: a sha256 pinned "
            "by the card or a lock file, announced by the origin, or the file name's prefix; "
            "this one is not: pin it with `omnizoo lock` or sha256=)"
        )
    elif verified:
        note = " (or unpickle this hash-verified file whole with OMNIZOO_TRUST_PICKLE=1)"
    else:
        note = ""
    needs = ", ".join(refused) if refused else reason
    return UnsafeCheckpointError(
        f"{what} needs unpickling of Python objects that torch.load(weights_only=True) does "
        f"not build: {needs}; nothing was run. {refusal_hint(path, refused, allowed)}{note}"
    )


def _unreadable(what: str, exc: BaseException) -> CheckpointError:
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    detail = text[0][:200] if text else ""
    return CheckpointError(
        f"{what} is not a readable torch checkpoint ({type(exc).__name__}: {detail})"
    )


def _unpickler_reason(exc: BaseException) -> str:
    """The useful line of torch's weights_only error (it starts with generic advice)."""
    text = _ANSI.sub("", str(exc))
    _, sep, rest = text.partition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in (rest if sep else text).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    # torch's own advice (add_safe_globals) cannot reach omnizoo's load: trust= does that
    line = lines[0].split(" Please use ", 1)[0].rstrip()
    return line if len(line) <= 300 else line[:300].rsplit(" ", 1)[0] + " ..."


def _needs_unsafe(reason: str) -> bool:
    """Whether weights_only refused an object it does not allow (rather than garbage)."""
    low = reason.lower()
    return any(w in low for w in ("global", "allowlist", "safe_globals", "reduce", "build"))


def _torch_load(
    path: Path, *, weights_only: bool, mmap: bool, allowed: tuple[Any, ...] = ()
) -> Any:
    import torch

    with torch.serialization.safe_globals(list(allowed)) if allowed else contextlib.nullcontext():
        if mmap:
            try:
                return torch.load(
                    str(path), map_location="cpu", weights_only=weights_only, mmap=True
                )
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
        return torch.load(str(path), map_location="cpu", weights_only=weights_only)


def _read_safetensors(path: Path, what: str, head: bytes, size: int) -> Any:
    header_len = int.from_bytes(head[:8], "little")
    if 8 + header_len > size:
        raise CheckpointError(
            f"{what} is not a readable safetensors file: its header claims {header_len} bytes "
            f"but the file has {size}"
        )
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{what} is not a readable safetensors file: {exc}") from exc


def _read_npz(path: Path, what: str) -> Any:
    import numpy as np
    import torch

    try:
        with np.load(str(path), allow_pickle=False) as data:
            arrays = {k: np.array(data[k]) for k in data.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UnsafeCheckpointError(
                f"{what}: the .npz archive holds pickled objects; refused"
            ) from exc
        raise CheckpointError(f"{what} is not a readable .npz archive: {exc}") from exc
    except Exception as exc:
        raise CheckpointError(
            f"{what} is not a readable .npz archive ({type(exc).__name__}: {exc})"
        ) from exc
    try:
        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what}: an .npz array cannot become a tensor: {exc}") from exc


def load_checkpoint(
    path: str | Path,
    *,
    verified: bool = False,
    use_ema: bool = True,
    mmap: bool = True,
    trust: Iterable[Any] | str | None = None,
) -> dict[str, Any]:
    """:func:`read_checkpoint` + :func:`unwrap_checkpoint` + :func:`clean_state_dict`.

    Every failure is a :class:`CheckpointError` whose message starts with the path."""
    obj = read_checkpoint(path, verified=verified, mmap=mmap, trust=trust)
    try:
        return clean_state_dict(unwrap_checkpoint(obj, use_ema=use_ema))
    except CheckpointError as exc:
        raise type(exc)(f"{_what(Path(path))}: {exc}") from None
    except Exception as exc:  # a damaged file that still unpickled into odd objects
        raise CheckpointError(
            f"{_what(Path(path))}: no state dict inside ({type(exc).__name__}: {exc})"
        ) from exc
