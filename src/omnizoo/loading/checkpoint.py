"""Reading checkpoint files safely and finding the state dict inside them.

Nothing here unpickles arbitrary objects unless ``OMNIZOO_TRUST_PICKLE=1`` *and* the file was
verified by hash. Every malformed file is a :class:`~omnizoo.errors.CheckpointError` naming
the path and the cause.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = [
    "STRIP_PREFIXES",
    "WRAPPER_KEYS",
    "clean_state_dict",
    "copy_metadata",
    "load_checkpoint",
    "read_checkpoint",
    "sniff_format",
    "unwrap_checkpoint",
]

#: Wrapper keys searched, in order, for the state dict inside a training checkpoint.
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "ema", "state_dict", "model", "module", "net")
#: Prefixes left by DataParallel / DDP and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ----------------------------------------------------------------------------- reading files
def sniff_format(path: Path) -> str:
    """``safetensors``, ``zip`` (torch.save / .npz), ``legacy-pickle`` or ``onnx``/``unknown``."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n < 100_000_000:
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol 2+ (torch < 1.6 files)
        return "legacy-pickle"
    return "unknown"


def read_checkpoint(
    path: str | Path,
    *,
    verified: bool = True,
    mmap: bool = True,
    trust_pickle: bool | None = None,
) -> Any:
    """Read a checkpoint file safely and return what it holds (usually a dict).

    * ``.safetensors`` -> safetensors (no code can run);
    * torch files -> ``torch.load(weights_only=True)`` (memory-mapped when the file allows);
    * ``.npz`` -> ``numpy.load(allow_pickle=False)`` as a dict of tensors.

    A torch file that needs arbitrary unpickling raises :class:`UnsafeCheckpointError` and runs
    nothing, unless ``trust_pickle`` (default: ``OMNIZOO_TRUST_PICKLE``) is set *and*
    ``verified`` is True (the bytes passed a hash check).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if trust_pickle is None:
        from ..settings import get_settings

        trust_pickle = get_settings().trust_pickle
    kind = sniff_format(path)
    if kind == "safetensors" or path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if path.suffix == ".npz":
        import numpy as np

        try:
            with np.load(str(path), allow_pickle=False) as data:
                return {k: torch.from_numpy(np.array(data[k])) for k in data.files}
        except ValueError as exc:
            raise UnsafeCheckpointError(f"{path}: .npz needs pickled objects; refused") from exc
    try:
        return _torch_load(path, weights_only=True, mmap=mmap and kind == "zip")
    except pickle.UnpicklingError as exc:
        if trust_pickle and verified:
            return _torch_load(path, weights_only=False, mmap=mmap and kind == "zip")
        why = (
            "OMNIZOO_TRUST_PICKLE=1 only applies to files verified by hash"
            if trust_pickle
            else "set OMNIZOO_TRUST_PICKLE=1 to allow it for verified files you trust"
        )
        raise UnsafeCheckpointError(
            f"{path} needs arbitrary unpickling (weights_only=True refused it: "
            f"{_ANSI.sub('', str(exc).splitlines()[0])[:160]}); nothing was run. {why}, "
            "or re-save the checkpoint as a plain state dict / safetensors"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from exc


def _torch_load(path: Path, *, weights_only: bool, mmap: bool) -> Any:
    import torch

    if mmap:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
    return torch.load(str(path), map_location="cpu", weights_only=weights_only)


def unwrap_checkpoint(obj: Any, *, use_ema: bool = True) -> dict[str, Any]:
    """The state dict inside a training checkpoint (EMA first when ``use_ema``)."""
    keys = WRAPPER_KEYS if use_ema else tuple(k for k in WRAPPER_KEYS if "ema" not in k)
    seen = 0
    while isinstance(obj, Mapping) and seen < 4:
        seen += 1
        if obj and all(_is_tensor(v) for v in obj.values()):
            break
        for key in keys:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
            if inner is not None and hasattr(inner, "state_dict") and callable(inner.state_dict):
                obj = inner.state_dict()
                break
        else:
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint holds a {type(obj).__name__}, not a state dict (a dict of tensors)"
        )
    # Tensors, plus the dtype / packed-param tuples of quantized modules.
    tensors: dict[str, Any] = OrderedDict((str(k), v) for k, v in obj.items() if _is_state_value(v))
    copy_metadata(obj, tensors)
    if not tensors:
        raise CheckpointError(
            "checkpoint holds no tensors; looked inside " + ", ".join(repr(k) for k in keys)
        )
    return tensors


def _is_state_value(value: Any) -> bool:
    import torch

    if isinstance(value, (torch.Tensor, torch.dtype)):
        return True
    return isinstance(value, (tuple, list)) and any(_is_state_value(v) for v in value)


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def clean_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Strip ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    out: dict[str, Any] = OrderedDict()
    for key, value in state_dict.items():
        new = key
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if new.startswith(prefix):
                    new = new[len(prefix) :]
                    changed = True
            new = new.replace("._orig_mod.", ".")
        out[new] = value
    copy_metadata(state_dict, out, strip=True)
    return out


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            bare = prefix[:-1]
            if key == bare:
                return ""
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key.replace("._orig_mod.", ".")


def copy_metadata(src: Any, dst: Any, *, strip: bool = False) -> None:
    """Carry ``state_dict._metadata`` (per-module versions some loaders read, e.g. MNASNet)."""
    meta = getattr(src, "_metadata", None)
    if meta is None:
        return
    new = OrderedDict()
    for key, value in meta.items():
        new[_strip(key) if strip else key] = value
    with contextlib.suppress(AttributeError):
        dst._metadata = new


def load_checkpoint(
    path: str | Path, *, verified: bool = True, use_ema: bool = True, mmap: bool = True
) -> dict[str, Any]:
    """:func:`read_checkpoint` + :func:`unwrap_checkpoint` + :func:`clean_state_dict`."""
    return clean_state_dict(
        unwrap_checkpoint(read_checkpoint(path, verified=verified, mmap=mmap), use_ema=use_ema)
    )
