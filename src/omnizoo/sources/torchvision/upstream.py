"""Calling torchvision's own builders with omnizoo's verified bytes.

The builders are called exactly as upstream does (so every weights-dependent choice they make
is kept: FrozenBatchNorm with a pretrained backbone, Inception's ``transform_input``,
quantization), while :func:`weights_hooks` replaces what they would download:

* the model's own Weights member returns the state dict omnizoo read and verified, and the
  builder's ``model.load_state_dict(that)`` is routed to omnizoo's fit policy;
* every other member (a detection model's ImageNet backbone, ``weights_backbone``) is fetched
  through the verified cache and read safely, instead of torch.hub's unverified download.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ...errors import OfflineError

__all__ = ["meta_or_real", "quiet", "tvm", "weights_hooks"]

_T = TypeVar("_T")
_hook_lock = threading.RLock()


def tvm() -> Any:
    """``torchvision.models`` (imported on first use)."""
    import torchvision.models as models

    return models


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence torchvision's deprecation chatter while building."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*default weight initialization.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        yield


def meta_or_real(build: Callable[[bool], _T], *, meta: bool = True) -> _T:
    """``build(True)`` (on the meta device), or ``build(False)`` when the builder needs real
    tensors: some run a forward pass while building (SSDlite measures its backbone's output
    channels), which meta tensors cannot do."""
    if not meta:
        return build(False)
    try:
        return build(True)
    except RuntimeError as exc:
        if "meta" not in str(exc):
            raise
        return build(False)


class _Intercepted(dict[str, Any]):
    """The state dict handed to a torchvision builder; recognised by the load hook."""


def fetch_enum_weights(member: Any) -> dict[str, Any]:
    """The state dict of a torchvision Weights member, through the verified cache.

    Used for weights a builder loads by itself (``weights_backbone``); offline and uncached,
    the error names the weights and the way out (``weights_backbone=None``).
    """
    from ...loading.state_dict_files import load_checkpoint
    from ...values.card import WeightsFile
    from ...weights.download import fetch_verified
    from ...weights.hashing import parse_hash_prefix

    url = str(member.url)
    filename = url.rsplit("/", 1)[-1]
    label = f"{type(member).__name__}.{member.name}"
    try:
        path = fetch_verified(
            WeightsFile(urls=(url,), filename=filename, hash_prefix=parse_hash_prefix(filename)),
            name=label,
        ).path
    except OfflineError as exc:
        raise OfflineError(
            f"the builder loads {label} (its default weights_backbone) and it is not in the "
            f"weights cache. Pass weights_backbone=None for a randomly initialised backbone, "
            f"or fetch it once with `omnizoo download {url}`. ({exc})",
            url=url,
        ) from None
    return load_checkpoint(path, verified=True)


@contextlib.contextmanager
def weights_hooks(
    weights: Any = None,
    state_dict: dict[str, Any] | None = None,
    load: Callable[[Any, dict[str, Any]], None] | None = None,
    *,
    skip_loads: bool = False,
) -> Iterator[list[bool]]:
    """While a builder runs: ``weights.get_state_dict()`` returns ``state_dict`` and the
    builder's ``model.load_state_dict(it)`` calls ``load(model, it)``; any other Weights
    member is fetched with :func:`fetch_enum_weights` (or, with ``skip_loads``, for a model on
    the meta device, not loaded at all). Yields a list that gets an entry when ``load`` ran."""
    from torch import nn
    from torchvision.models._api import WeightsEnum

    seen: list[bool] = []
    marker = _Intercepted(state_dict or {})
    skipped = _Intercepted()
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        marker._metadata = metadata  # type: ignore[attr-defined]
    with _hook_lock:
        original_get = WeightsEnum.get_state_dict
        original_load = nn.Module.load_state_dict

        def get_state_dict(self: Any, *args: Any, **kwargs: Any) -> Any:
            if weights is not None and self is weights:
                return marker
            if skip_loads:
                return skipped
            return fetch_enum_weights(self)

        def load_state_dict(self: Any, sd: Any, *args: Any, **kwargs: Any) -> Any:
            if sd is marker and load is not None:
                seen.append(True)
                load(self, marker)
                return nn.modules.module._IncompatibleKeys([], [])
            if sd is skipped:
                return nn.modules.module._IncompatibleKeys([], [])
            return original_load(self, sd, *args, **kwargs)

        WeightsEnum.get_state_dict = get_state_dict
        nn.Module.load_state_dict = load_state_dict  # type: ignore[method-assign,assignment]
        try:
            yield seen
        finally:
            WeightsEnum.get_state_dict = original_get
            nn.Module.load_state_dict = original_load  # type: ignore[method-assign]
