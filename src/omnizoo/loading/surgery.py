"""State-dict and model surgery: a stem for ``in_chans``, a head for ``num_classes``.

The *policy* (when to adapt, keep or re-initialise) is :mod:`omnizoo.loading.fit`; these are
the mechanics it and the adapters use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "adapt_input_conv",
    "drop_unfitting",
    "replace_classifier",
    "replace_first_conv",
    "set_submodule",
]


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


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
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
        set_submodule(model, path, new)
        keys.extend(f"{path}.{k}" for k, _ in new.named_parameters())
    return keys
