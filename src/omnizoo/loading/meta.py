"""Meta-device builds: parameters created without memory and without random init.

::

    with meta_params():                      # parameters are created on the meta device:
        model = build()                      # no memory, init ops skipped (buffers stay real)
    fit_state_dict(model, state_dict, ...)   # assign=True: the file's tensors become the params,
                                             # anything left on meta is materialised and re-init

so a pretrained model costs about the time to read its file, not to initialise random weights
first.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["build_on_meta", "materialize_", "meta_params", "real_params"]


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


#: In-place ops that weight init runs (``nn.init``, timm's ``trunc_normal_``: uniform_, erfinv_,
#: mul_, add_, clamp_) which, on a meta tensor, go through torch's Python reference
#: implementations: ``clamp_`` costs 1-2 ms a call and tens of ms (up to seconds on a loaded
#: machine) on its first, ``normal_``/``erfinv_`` 0.3 ms. A meta tensor has no values, so
#: inside :func:`meta_params` they return the tensor at once (same shape, dtype and device);
#: only the shape checks of a malformed call are lost.
SKIPPED_ON_META: tuple[str, ...] = (
    # random fills
    "normal_",
    "uniform_",
    "exponential_",
    "log_normal_",
    "cauchy_",
    "geometric_",
    "bernoulli_",
    "random_",
    # the arithmetic of init formulas
    "erfinv_",
    "erf_",
    "clamp_",
    "clamp_min_",
    "clamp_max_",
    "clip_",
    "mul_",
    "div_",
    "add_",
    "sub_",
    "addcmul_",
    "addcdiv_",
    "lerp_",
    "pow_",
    "sqrt_",
    "exp_",
    "log_",
    "abs_",
    "neg_",
    "sign_",
    "tanh_",
    "fmod_",
    "remainder_",
    "fill_",
    "zero_",
    "masked_fill_",
)
_original_ops: dict[str, Any] = {}
_wrappers: dict[str, Any] = {}
_ABSENT = object()


def _skip_on_meta(name: str, original: Any) -> Any:
    def op(self: Any, *args: Any, **kwargs: Any) -> Any:
        # the thread check first: other threads pay one attribute lookup
        if getattr(_local, "depth", 0) and self.is_meta:
            return self
        return original(self, *args, **kwargs)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = original.__doc__
    op.__wrapped__ = original  # type: ignore[attr-defined]
    return op


def _patch() -> None:
    """Install the meta hooks (the first user; under ``_patch_lock``)."""
    global _original_register_parameter
    import torch
    from torch import nn

    _original_register_parameter = nn.Module.register_parameter
    nn.Module.register_parameter = _register_parameter_on_meta  # type: ignore[method-assign]
    for name in SKIPPED_ON_META:
        original = getattr(torch.Tensor, name, None)
        if original is None:  # an op this torch does not have
            continue
        # what Tensor itself held (usually nothing: the op is inherited from TensorBase)
        _original_ops[name] = torch.Tensor.__dict__.get(name, _ABSENT)
        _wrappers[name] = wrapper = _skip_on_meta(name, original)
        setattr(torch.Tensor, name, wrapper)


def _unpatch() -> None:
    """Put back what :func:`_patch` replaced (the last user; under ``_patch_lock``). An
    attribute someone replaced since is left as they set it."""
    global _original_register_parameter
    import torch
    from torch import nn

    if _original_register_parameter is not None:
        if nn.Module.register_parameter is _register_parameter_on_meta:
            nn.Module.register_parameter = _original_register_parameter  # type: ignore[method-assign]
        _original_register_parameter = None
    for name, original in _original_ops.items():
        if torch.Tensor.__dict__.get(name) is not _wrappers.get(name):
            continue
        if original is _ABSENT:
            delattr(torch.Tensor, name)
        else:
            setattr(torch.Tensor, name, original)
    _original_ops.clear()
    _wrappers.clear()


@contextlib.contextmanager
def meta_params() -> Iterator[None]:
    """Inside this block (this thread only) every new ``nn.Parameter`` lives on the meta device.

    Buffers stay real, so non-persistent buffers computed in ``__init__`` (relative position
    indices, position ids, anchors) keep their values; parameter init on meta tensors returns
    at once (:data:`SKIPPED_ON_META`). Load real tensors with
    :func:`~.fit.fit_state_dict`. The hooks are process-wide while any thread is inside the
    block (reference-counted), act only for the threads inside it, and are removed on the way
    out, exceptions included.
    """
    global _patch_users
    with _patch_lock:
        if _patch_users == 0:
            try:
                _patch()
            except BaseException:
                _unpatch()
                raise
        _patch_users += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                _unpatch()


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
        # to_empty and the fresh init touch every tensor of the module: the ones already
        # loaded are put back (SwinV2-CR on timm 1.0.9 has a meta buffer beside its
        # loaded logit_scale).
        loaded = {
            n: t.detach()  # its storage: to_empty swaps a parameter's .data in place
            for n, t in list(module._parameters.items()) + list(module._buffers.items())
            if t is not None and not t.is_meta
        }
        module.to_empty(device=device, recurse=False)
        _init_module_(module)
        for n, t in loaded.items():
            param = module._parameters.get(n)
            if param is not None:
                param.data = t
            else:
                module._buffers[n] = t
        names.extend(f"{mod_name}.{n}" if mod_name else n for n, _ in own)
