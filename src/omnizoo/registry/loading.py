"""Shared load mechanics for every source: safe reading, key cleaning, stem/head adaptation and
fast meta-device builds.

The fast path every adapter follows::

    with meta_params():                      # parameters are created on the meta device:
        model = build()                      # no memory, no random init (buffers stay real)
    state_dict = load_checkpoint(path)       # safetensors, or torch.load(weights_only, mmap)
    report = load_into(model, state_dict)    # assign=True: the file's tensors become the params,
                                             # anything left on meta is materialised and re-init

so a pretrained model costs about the time to read its file, not to initialise random weights
first. Nothing here unpickles arbitrary objects unless ``OMNIZOO_TRUST_PICKLE=1`` *and* the file
was verified.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, UnsafeCheckpointError
from ..sources.base import LoadReport

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "adapt_input_conv",
    "build_on_meta",
    "clean_state_dict",
    "drop_unfitting",
    "load_checkpoint",
    "load_into",
    "materialize_",
    "meta_params",
    "read_checkpoint",
    "real_params",
    "replace_classifier",
    "replace_first_conv",
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
    _copy_metadata(obj, tensors)
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
    _copy_metadata(state_dict, out, strip=True)
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


def _copy_metadata(src: Any, dst: Any, *, strip: bool = False) -> None:
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


# ----------------------------------------------------------------------------- adaptation
def adapt_input_conv(in_chans: int, weight: torch.Tensor, base_chans: int = 3) -> torch.Tensor:
    """Adapt a pretrained stem conv weight ``[out, base_chans, kh, kw]`` to ``in_chans``.

    timm's rule: 1 channel -> sum over the input channels; more -> repeat the RGB filters and
    scale by ``base_chans / in_chans`` so activations keep their magnitude.
    """
    if weight.ndim != 4:
        raise CheckpointError(f"cannot adapt a {weight.ndim}-d stem weight to {in_chans} channels")
    dtype = weight.dtype
    w = weight.float()
    out_ch, in_ch, kh, kw = w.shape
    if in_chans == in_ch:
        return weight
    if in_chans == 1:
        if in_ch > 3:
            if in_ch % 3:
                raise CheckpointError(f"stem weight with {in_ch} input channels cannot be summed")
            w = w.reshape(out_ch, in_ch // 3, 3, kh, kw).sum(dim=2)
        else:
            w = w.sum(dim=1, keepdim=True)
    else:
        if in_ch != base_chans:
            raise CheckpointError(f"stem weight has {in_ch} input channels, expected {base_chans}")
        repeat = math.ceil(in_chans / base_chans)
        w = w.repeat(1, repeat, 1, 1)[:, :in_chans, :, :]
        w *= base_chans / float(in_chans)
    return w.to(dtype).contiguous()


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def replace_first_conv(model: nn.Module, path: str, in_chans: int) -> list[str]:
    """Swap the stem conv at ``path`` for one with ``in_chans`` inputs (same device, uninit).

    Returns the state-dict keys of the new module. Load the adapted weight into it afterwards
    (:func:`adapt_input_conv`), or it is re-initialised by :func:`materialize_`.
    """
    import torch
    from torch import nn

    old = model.get_submodule(path)
    if not isinstance(old, nn.Conv2d):
        raise CheckpointError(f"{path} is a {type(old).__name__}, not a Conv2d stem")
    if old.in_channels == in_chans:
        return []
    if old.groups != 1:
        raise CheckpointError(f"cannot change the input channels of grouped stem conv {path}")
    conv: Any = nn.Conv2d  # kernel/stride/padding are copied from an existing Conv2d
    new = conv(
        in_chans,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=1,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=torch.device("meta"),
        dtype=old.weight.dtype,
    )
    _set_submodule(model, path, new)
    return [f"{path}.{k}" for k, _ in new.named_parameters()]


def drop_unfitting(sd: dict[str, Any], model: nn.Module, heads: Iterable[str]) -> list[str]:
    """Delete from ``sd`` the tensors under the ``heads`` module paths that ``model`` has no
    place for or holds in another shape (a head replaced for ``num_classes``); returns their
    keys. What fits stays, so a user's checkpoint with a head of the new size loads whole."""
    prefixes = tuple(f"{h}." for h in heads)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    dropped = [
        k
        for k in sd
        if k.startswith(prefixes) and (k not in shapes or tuple(sd[k].shape) != shapes[k])
    ]
    for key in dropped:
        del sd[key]
    return dropped


def replace_classifier(model: nn.Module, paths: Iterable[str], num_classes: int) -> list[str]:
    """Swap each head module (Linear or 1x1 Conv2d) for a fresh one with ``num_classes`` outputs.

    The new modules are created on the meta device; :func:`load_into` / :func:`materialize_`
    initialise them (``reset_parameters``). ``num_classes=0`` replaces the head by Identity.
    Returns the state-dict keys of the new heads.
    """
    import torch
    from torch import nn

    keys: list[str] = []
    for path in paths:
        old = model.get_submodule(path)
        new: nn.Module
        if num_classes == 0:
            new = nn.Identity()
        elif isinstance(old, nn.Linear):
            new = nn.Linear(
                old.in_features,
                num_classes,
                bias=old.bias is not None,
                device=torch.device("meta"),
                dtype=old.weight.dtype,
            )
        elif isinstance(old, nn.Conv2d):
            conv: Any = nn.Conv2d
            new = conv(
                old.in_channels,
                num_classes,
                old.kernel_size,
                stride=old.stride,
                padding=old.padding,
                bias=old.bias is not None,
                device=torch.device("meta"),
                dtype=old.weight.dtype,
            )
        else:
            raise CheckpointError(
                f"head {path} is a {type(old).__name__}; only Linear/Conv2d heads can be resized"
            )
        _set_submodule(model, path, new)
        keys.extend(f"{path}.{k}" for k, _ in new.named_parameters())
    return keys


# ----------------------------------------------------------------------------- meta builds
_local = threading.local()
_patch_lock = threading.Lock()
_patch_users = 0
_original_register_parameter: Callable[..., None] | None = None


def _register_parameter_on_meta(self: Any, name: str, param: Any) -> None:
    assert _original_register_parameter is not None
    _original_register_parameter(self, name, param)
    if getattr(_local, "depth", 0) and param is not None and param.device.type != "meta":
        p = self._parameters[name]
        self._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)


#: In-place init ops that meta tensors run through slow Python decompositions (normal_ costs
#: seconds on its first meta call); inside meta_params they return at once for meta tensors.
_INIT_OPS = (
    "normal_",
    "uniform_",
    "erfinv_",
    "exponential_",
    "log_normal_",
    "cauchy_",
    "geometric_",
    "bernoulli_",
    "random_",
)
_original_ops: dict[str, Any] = {}


def _skip_on_meta(name: str, original: Any) -> Any:
    def op(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0) and self.is_meta:
            return self
        return original(self, *args, **kwargs)

    op.__name__ = name
    op.__doc__ = original.__doc__
    return op


@contextlib.contextmanager
def meta_params() -> Iterator[None]:
    """Inside this block (this thread only) every new ``nn.Parameter`` lives on the meta device.

    Buffers stay real, so non-persistent buffers computed in ``__init__`` (relative position
    indices, position ids, anchors) keep their values; parameter init runs on meta and costs
    nothing. Load real tensors with :func:`load_into`.
    """
    global _patch_users, _original_register_parameter
    import torch
    from torch import nn

    with _patch_lock:
        if _patch_users == 0:
            _original_register_parameter = nn.Module.register_parameter
            nn.Module.register_parameter = _register_parameter_on_meta  # type: ignore[method-assign]
            for op in _INIT_OPS:
                original = getattr(torch.Tensor, op)
                _original_ops[op] = original
                setattr(torch.Tensor, op, _skip_on_meta(op, original))
        _patch_users += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0 and _original_register_parameter is not None:
                nn.Module.register_parameter = _original_register_parameter  # type: ignore[method-assign]
                _original_register_parameter = None
                for op, original in _original_ops.items():
                    setattr(torch.Tensor, op, original)
                _original_ops.clear()


@contextlib.contextmanager
def real_params() -> Iterator[None]:
    """Suspend :func:`meta_params` for this thread (used while loading real tensors)."""
    depth = getattr(_local, "depth", 0)
    _local.depth = 0
    try:
        yield
    finally:
        _local.depth = depth


def build_on_meta(fn: Callable[..., nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    """``fn(*args, **kwargs)`` with parameters on the meta device (see :func:`meta_params`)."""
    with meta_params():
        return fn(*args, **kwargs)


def _init_module_(module: nn.Module) -> None:
    """Fresh init of one module whose own tensors were just materialised."""
    import torch
    from torch import nn

    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for name, p in module.named_parameters(recurse=False):
            if p.ndim >= 2:
                nn.init.trunc_normal_(p, std=0.02)
            elif "weight" in name or name in ("gamma", "scale"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)
        for _, b in module.named_buffers(recurse=False):
            b.zero_()


def materialize_(model: nn.Module, *, device: Any = "cpu") -> list[str]:
    """Give every tensor still on the meta device real memory and a fresh init.

    Returns the state-dict style names of the tensors that were materialised.
    """
    names: list[str] = []
    with real_params():
        _materialize_into(model, names, device)
    return names


def _materialize_into(model: nn.Module, names: list[str], device: Any) -> None:
    for mod_name, module in model.named_modules():
        own = [
            (n, t)
            for n, t in list(module.named_parameters(recurse=False))
            + list(module.named_buffers(recurse=False))
            if t is not None and t.is_meta
        ]
        if not own:
            continue
        module.to_empty(device=device, recurse=False)
        _init_module_(module)
        names.extend(f"{mod_name}.{n}" if mod_name else n for n, _ in own)


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    report: LoadReport | None = None,
    reinitialize: Iterable[str] = (),
    adapted: Iterable[str] = (),
    strict: bool = False,
    source_file: str | None = None,
) -> LoadReport:
    """Load ``state_dict`` into ``model`` (which may hold meta parameters) and report.

    Tensors are assigned (``assign=True``), cast to the dtype the model declares, so memory-mapped
    file tensors become the parameters without a copy. Shape mismatches raise
    :class:`CheckpointError` naming the keys. Anything still on the meta device afterwards is
    materialised and initialised fresh: keys in ``reinitialize`` are reported as re-initialised,
    the rest as missing. With ``strict=True``, missing or unexpected keys raise.
    """
    import torch

    report = report if report is not None else LoadReport(source_file=source_file)
    if source_file and not report.source_file:
        report.source_file = source_file
    reinit = set(reinitialize)
    adapted_set = set(adapted)
    own = dict(model.state_dict(keep_vars=True))
    state_dict = _with_num_batches_tracked(own, state_dict)
    sd: dict[str, Any] = OrderedDict()
    _copy_metadata(state_dict, sd)
    mismatched: list[str] = []
    unexpected: list[str] = []
    for key, value in state_dict.items():
        target = own.get(key)
        if target is None:
            unexpected.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(target.shape):
            mismatched.append(
                f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
            continue
        if target.dtype != value.dtype and (target.is_floating_point() or target.is_complex()):
            value = value.to(target.dtype)
        sd[key] = value
    if mismatched:
        raise CheckpointError(
            "checkpoint does not fit the model (shape mismatch): "
            + "; ".join(mismatched[:10])
            + (f"; ... (+{len(mismatched) - 10})" if len(mismatched) > 10 else "")
        )
    missing = [k for k in own if k not in sd]
    # Only tensors listed by state_dict() count; non-persistent buffers are never in files.
    really_missing = [k for k in missing if k not in reinit]
    if strict and (really_missing or unexpected):
        raise CheckpointError(
            f"checkpoint does not match the model: missing {really_missing[:10]}, "
            f"unexpected {unexpected[:10]}"
        )
    with torch.no_grad(), real_params():
        model.load_state_dict(sd, strict=False, assign=True)
        materialized = set(materialize_(model))
    for key in sd:
        (report.adapted if key in adapted_set else report.loaded).append(key)
    for key in missing:
        if key in reinit:
            report.reinitialized.append(key)
        else:
            report.missing.append(key)
    for key in materialized:
        if key not in own:  # a non-persistent buffer left on meta by the builder
            report.notes.append(f"{key} was on the meta device and was re-initialised")
    report.unexpected.extend(unexpected)
    return report


def _with_num_batches_tracked(own: Mapping[str, Any], state_dict: Mapping[str, Any]) -> Any:
    """Files saved before torch 0.4.1 (old torchvision V1, Cadene, lukemelas) have no
    ``num_batches_tracked``; BatchNorm's own loader fills in 0 for them, so do the same rather
    than report them missing."""
    import torch

    suffix = "num_batches_tracked"
    fill = [
        key
        for key in own
        if key.endswith(suffix)
        and key not in state_dict
        and key[: -len(suffix)] + "running_mean" in state_dict
    ]
    if not fill:
        return state_dict
    out: dict[str, Any] = OrderedDict(state_dict)
    _copy_metadata(state_dict, out)
    for key in fill:
        out[key] = torch.zeros((), dtype=torch.long)
    return out


def load_or_init(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    path: Path | None,
    name: str,
    verified: bool,
    reinitialize: Iterable[str] = (),
    adapted: Iterable[str] = (),
) -> LoadReport:
    """Load ``state_dict`` from ``path`` into a meta-built ``model``, or (no path) initialise it.

    For verified published weights (``verified``), anything missing or unexpected means the file
    is not this architecture's, and raises :class:`CheckpointError` naming ``name``; a user's
    checkpoint is loaded as far as it fits and the report says the rest.
    """
    if path is None:
        materialize_(model)
        report = LoadReport()
        report.reinitialized.extend(reinitialize)
        return report
    report = load_into(
        model, state_dict, reinitialize=reinitialize, adapted=adapted, source_file=str(path)
    )
    if verified and not report.ok:
        raise CheckpointError(
            f"{name}: the weights file does not match the architecture ({report})"
        )
    return report
