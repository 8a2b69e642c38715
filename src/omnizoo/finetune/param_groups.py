"""Optimizer parameter groups: no decay on biases/norms, a head learning rate, layer-wise decay.

:func:`param_groups` returns a list of dicts that ``torch.optim.AdamW`` (or any torch
optimizer) takes directly::

    groups = param_groups(model, lr=1e-3, weight_decay=0.05, head_lr=1e-2, layer_decay=0.75)
    optimizer = torch.optim.AdamW(groups)

Each group carries ``lr``, ``weight_decay``, ``lr_scale`` (its lr divided by ``lr``: the key timm's
schedulers honour) and ``group_name`` (e.g. ``"layer3_decay"``, ``"head_no_decay"``).
Frozen parameters (``requires_grad=False``) are left out.

**Layer ids** (for ``layer_decay``; see :func:`layer_ids`): the depth of every parameter, 0 for
the stem, the largest for the classifier head, whose scale is 1; layer ``i`` gets
``lr * layer_decay ** (max_id - i)``.

* timm models: the model's own ``group_matcher(coarse=False)`` through timm's
  ``group_parameters`` (exactly what ``timm.optim.param_groups_layer_decay`` uses);
* everything else, by stages found in the module tree: children of a stage container
  (``features`` — VGG/AlexNet/ConvNeXt/EfficientNet/MobileNet/Swin/DenseNet/SqueezeNet;
  ``encoder.layers`` — ViT; ``trunk_output`` — RegNet; ``layers`` — MNASNet; ``blocks`` —
  MaxViT; ``_blocks`` — lukemelas EfficientNet; ``stages``, ``_features``), or top-level modules
  named ``layerN``/``stageN``/``blockN`` (ResNet, Cadene SE-ResNet ``layer0..4``, ShuffleNet,
  Xception). Everything before the first stage is the stem (id 0), everything after the last
  stage one more id (final norm / conv head), the head one more again. A model with no stage
  at all (Inception v3, GoogLeNet) gets one id per top-level module, in order.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, UnsupportedError
from ..loading.heads import find_classifier, unwrap_model

if TYPE_CHECKING:
    from torch import nn

__all__ = ["NO_WEIGHT_DECAY_NAMES", "layer_ids", "param_groups"]

#: Parameter names (last component) never decayed even though they are not 1-D: position
#: embeddings, class tokens and relative position tables of torchvision's ViT/Swin, as timm's
#: ``no_weight_decay()`` lists for its own models.
NO_WEIGHT_DECAY_NAMES = frozenset(
    {
        "class_token",
        "pos_embedding",
        "cls_token",
        "pos_embed",
        "dist_token",
        "reg_token",
        "relative_position_bias_table",
        "logit_scale",
    }
)

_STAGE_CONTAINERS = (
    "features",
    "encoder.layers",
    "trunk_output",
    "layers",
    "blocks",
    "stages",
    "_blocks",
    "_features",
)
_STAGE_NAME = re.compile(r"^(layer|stage|block)_?\d+$")


def _containers(model: nn.Module) -> list[str]:
    from torch import nn

    found = []
    for path in _STAGE_CONTAINERS:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) >= 2:
            found.append(path)
    return found


def _unit(name: str, containers: Sequence[str]) -> tuple[bool, str]:
    """(is_stage, unit key) of one parameter name."""
    for c in containers:
        if name.startswith(c + "."):
            child = name[len(c) + 1 :].split(".", 1)[0]
            return True, f"{c}.{child}"
    top = name.split(".", 1)[0]
    return bool(_STAGE_NAME.match(top)), top


def _in_heads(name: str, heads: Sequence[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in heads)


def _heads(model: nn.Module) -> list[str]:
    try:
        return find_classifier(model)
    except UnsupportedError:
        return []


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Parameter name -> layer id (0 = stem, max = head) for layer-wise lr decay.

    >>> import torchvision
    >>> ids = layer_ids(torchvision.models.resnet18())
    >>> ids["conv1.weight"], ids["layer3.0.conv1.weight"], ids["fc.weight"]
    (0, 3, 5)
    """
    model = unwrap_model(model)
    names = [n for n, _ in model.named_parameters()]
    if not names:
        raise UnsupportedError(f"{type(model).__name__} has no parameters")
    group_matcher = getattr(model, "group_matcher", None)
    if callable(group_matcher):
        from timm.models import group_parameters

        return dict(group_parameters(model, group_matcher(coarse=False), reverse=True))
    heads = _heads(model)
    containers = _containers(model)
    ids: dict[str, int] = {}
    body = [n for n in names if not _in_heads(n, heads)]
    any_stage = any(_unit(n, containers)[0] for n in body)
    current = -1
    last_key: str | None = None
    last_stage: str | None = None
    for n in body:
        is_stage, unit = _unit(n, containers)
        if not any_stage or is_stage:
            key = unit
        elif last_stage is None:
            key = "<stem>"
        else:  # non-stage modules after a stage (final norm, conv head) share one id
            key = f"<after {last_stage}>"
        if is_stage:
            last_stage = unit
        if key != last_key:
            current += 1
            last_key = key
        ids[n] = current
    head_id = current + 1
    for n in names:
        if n not in ids:
            ids[n] = head_id
    return ids


def _no_decay_names(model: nn.Module, extra: Sequence[str]) -> list[str]:
    patterns = list(extra)
    nwd = getattr(model, "no_weight_decay", None)
    if callable(nwd):
        with contextlib.suppress(TypeError):  # a no_weight_decay that needs arguments
            patterns.extend(nwd())
    return patterns


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    head_lr: float | None = None,
    layer_decay: float | None = None,
    *,
    no_weight_decay: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim`` (see the module docstring).

    ``weight_decay`` applies to weights only: 1-D parameters (biases, norm scales/shifts),
    names in :data:`NO_WEIGHT_DECAY_NAMES`, the names a timm model's ``no_weight_decay()``
    returns and the ``no_weight_decay`` fnmatch patterns given here get 0. ``head_lr`` is the
    learning rate of the classifier head (default ``lr``). ``layer_decay`` in (0, 1] scales each
    layer's lr by ``layer_decay ** (depth from the head)``.

    >>> import torch, torchvision
    >>> model = torchvision.models.resnet18()
    >>> groups = param_groups(model, lr=1e-3, weight_decay=0.05, head_lr=1e-2, layer_decay=0.5)
    >>> sorted((g["group_name"], g["lr"]) for g in groups)[:3]
    [('head_decay', 0.01), ('head_no_decay', 0.01), ('layer0_decay', 3.125e-05)]
    >>> optimizer = torch.optim.AdamW(groups)

    Raises:
        ConfigurationError: ``lr``/``head_lr`` <= 0, ``weight_decay`` < 0, ``layer_decay``
            outside (0, 1].
        UnsupportedError: a model with no parameters, or ``head_lr`` for a model with no
            classifier head found.
    """
    if lr <= 0:
        raise ConfigurationError(f"lr must be > 0, got {lr!r}")
    if weight_decay < 0:
        raise ConfigurationError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ConfigurationError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    if head_lr is not None and head_lr <= 0:
        raise ConfigurationError(f"head_lr must be > 0, got {head_lr!r}")
    inner = unwrap_model(model)
    heads = _heads(inner) if head_lr is not None else []
    if head_lr is not None and not heads:
        raise UnsupportedError(
            f"head_lr given but no classifier head found in {type(inner).__name__}"
        )
    ids = layer_ids(inner) if layer_decay is not None else {}
    max_id = max(ids.values()) if ids else 0
    skip = _no_decay_names(inner, no_weight_decay)

    groups: dict[str, dict[str, Any]] = {}
    for name, param in inner.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = (
            param.ndim <= 1
            or name.endswith(".bias")
            or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES
            or name in skip
            or any(fnmatch.fnmatchcase(name, p) for p in skip)
        )
        wd = 0.0 if no_decay or not weight_decay else weight_decay
        suffix = "no_decay" if wd == 0.0 else "decay"
        if head_lr is not None and _in_heads(name, heads):
            group_lr, prefix = head_lr, "head"
        elif layer_decay is not None:
            layer = ids[name]
            group_lr, prefix = lr * layer_decay ** (max_id - layer), f"layer{layer}"
        else:
            group_lr, prefix = lr, "all"
        key = f"{prefix}_{suffix}"
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "params": [],
                "lr": group_lr,
                "weight_decay": wd,
                "lr_scale": group_lr / lr,
                "group_name": key,
            }
        group["params"].append(param)
    return list(groups.values())
