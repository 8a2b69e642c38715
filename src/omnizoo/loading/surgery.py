"""State-dict and model surgery: a stem for ``in_chans``, head tensors that do not fit.

The *policy* (when to adapt, keep or re-initialise) is :mod:`omnizoo.loading.fit`; these are
the mechanics it and the adapters use. Heads (find, width, a new one) are :mod:`.heads`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .heads import set_submodule

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["adapt_input_conv", "drop_unfitting", "replace_first_conv"]


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
    set_submodule(model, path, new)
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
