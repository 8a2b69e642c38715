"""Finding the state dict inside a training checkpoint and cleaning its keys.

A file read by :mod:`omnizoo.loading.state_dict_files` may be a bare state dict or a training
checkpoint wrapping one (``state_dict_ema``, ``model``, ...); its keys may carry the prefixes
of DataParallel/DDP (``module.``) and ``torch.compile`` (``_orig_mod.``).

>>> list(clean_state_dict({"module._orig_mod.fc.weight": 1}))
['fc.weight']
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ..errors import CheckpointError

__all__ = [
    "STRIP_PREFIXES",
    "WRAPPER_KEYS",
    "clean_state_dict",
    "copy_metadata",
    "unwrap_checkpoint",
]

#: Wrapper keys searched, in order, for the state dict inside a training checkpoint.
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "ema", "state_dict", "model", "module", "net")
#: Prefixes left by DataParallel / DDP and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")


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
    """Carry ``state_dict._metadata`` (per-module versions some loaders read, e.g. MNASNet).

    Metadata that is not a mapping of module names is dropped (a damaged file's)."""
    meta = getattr(src, "_metadata", None)
    if not isinstance(meta, Mapping):
        return
    new = OrderedDict()
    for key, value in meta.items():
        if not isinstance(key, str):
            continue
        new[_strip(key) if strip else key] = value
    with contextlib.suppress(AttributeError):
        dst._metadata = new
