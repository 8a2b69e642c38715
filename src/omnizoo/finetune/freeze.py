"""Freezing and unfreezing parameters, with BatchNorm statistics frozen when asked.

Which parameters a call touches (one selector at a time):

* default: :func:`freeze` selects everything but the classifier head(s) found by
  :func:`omnizoo.finetune.heads.find_classifier`; :func:`unfreeze` selects everything;
* ``up_to="layer3"``: every parameter registered before the module ``layer3`` and inside it
  (registration order is the order of ``model.named_parameters()``: the stem comes first in
  every source library), e.g. ``"features.5"``, ``"encoder.layers.encoder_layer_5"``,
  ``"blocks.6"``, ``"_blocks.10"``;
* ``patterns=["layer1.*", "conv1.*"]``: parameters whose name matches one of the
  :func:`fnmatch.fnmatch` patterns.

**Frozen BatchNorm statistics** (``freeze(..., freeze_bn=True)``): every norm layer with
running statistics (``BatchNorm1d/2d/3d``, ``SyncBatchNorm`` and subclasses such as timm's
``BatchNormAct2d``) whose running-stat buffers lie in the selected region is put in eval mode
and *kept* there. The mechanism: the layer instance gets its own ``train`` attribute (a small
picklable callable) that always switches it to eval mode, so ``model.train()`` — which calls
``child.train(mode)`` on every child — leaves it in eval mode; a forward pre-hook re-applies eval
mode in case ``layer.training`` was set by hand. :func:`unfreeze` (or :func:`unfreeze_bn_stats`)
removes both. Affine parameters are frozen by the selector like any other parameter.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..loading.heads import find_classifier, unwrap_model

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "freeze",
    "freeze_bn_stats",
    "is_bn_frozen",
    "trainable_summary",
    "unfreeze",
    "unfreeze_bn_stats",
]


def _ordered_tensor_names(model: nn.Module) -> list[str]:
    """Parameter and buffer names in registration (pre-)order."""
    names: list[str] = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        names.extend(prefix + n for n, p in module.named_parameters(recurse=False))
        names.extend(prefix + n for n, b in module.named_buffers(recurse=False))
    return names


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


def _select(
    model: nn.Module,
    *,
    up_to: str | None,
    patterns: Sequence[str] | str | None,
    default: str,
) -> set[str]:
    """Names (parameters and buffers) the selector picks; see the module docstring."""
    if up_to is not None and patterns is not None:
        raise ConfigurationError("give either up_to= or patterns=, not both")
    names = _ordered_tensor_names(model)
    if patterns is not None:
        if isinstance(patterns, str):
            patterns = [patterns]
        pats = list(patterns)
        return {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)}
    if up_to is not None:
        stage = up_to.rstrip(".")
        try:
            model.get_submodule(stage)
        except AttributeError:
            top = [n for n, _ in model.named_children()]
            raise ConfigurationError(
                f"up_to={up_to!r}: {type(model).__name__} has no module of that name; "
                f"its top-level modules are {', '.join(top)}"
            ) from None
        inside = [i for i, n in enumerate(names) if _under(n, stage)]
        if not inside:
            raise ConfigurationError(f"up_to={up_to!r} names a module with no parameters")
        return set(names[: inside[-1] + 1])
    if default == "all":
        return set(names)
    heads = find_classifier(model)
    return {n for n in names if not any(_under(n, h) for h in heads)}


def _norm_layers(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    from torch.nn.modules.batchnorm import _NormBase

    for name, module in model.named_modules():
        if isinstance(module, _NormBase) and module.track_running_stats:
            yield name, module


def _set_requires_grad(model: nn.Module, selected: set[str], flag: bool) -> list[str]:
    changed = []
    for name, param in model.named_parameters():
        if name in selected and param.requires_grad != flag:
            param.requires_grad_(flag)
            changed.append(name)
    return changed


def freeze(
    model: nn.Module,
    *,
    up_to: str | None = None,
    patterns: Sequence[str] | str | None = None,
    freeze_bn: bool = False,
) -> list[str]:
    """Stop gradients (``requires_grad=False``) for the selected parameters.

    Default: everything but the classifier head. Returns the names of the parameters that
    changed. ``freeze_bn=True`` also freezes the running statistics of the norm layers in the
    selected region (they stay in eval mode through ``model.train()``).

    >>> import torchvision
    >>> m = torchvision.models.resnet18()
    >>> _ = freeze(m, freeze_bn=True)
    >>> [n for n, p in m.named_parameters() if p.requires_grad]
    ['fc.weight', 'fc.bias']
    >>> _ = m.train(); m.bn1.training
    False

    Raises:
        ConfigurationError: both ``up_to`` and ``patterns``, or an ``up_to`` that names no
            module or a module without parameters.
    """
    inner = unwrap_model(model)
    selected = _select(inner, up_to=up_to, patterns=patterns, default="body")
    changed = _set_requires_grad(inner, selected, False)
    if freeze_bn:
        names = [n for n, m in _norm_layers(inner) if f"{n}.running_mean" in selected]
        freeze_bn_stats(inner, names)
    return changed


def unfreeze(
    model: nn.Module,
    *,
    up_to: str | None = None,
    patterns: Sequence[str] | str | None = None,
) -> list[str]:
    """Let gradients flow again for the selected parameters (default: all of them).

    Frozen BatchNorm statistics in the selected region are released too. Returns the names of
    the parameters that changed.

    >>> import torchvision
    >>> m = torchvision.models.resnet18()
    >>> _ = freeze(m)
    >>> sorted({n.split(".")[0] for n in unfreeze(m, patterns="layer4.*")})
    ['layer4']

    Raises:
        ConfigurationError: both ``up_to`` and ``patterns``, or an ``up_to`` that names no
            module or a module without parameters.
    """
    inner = unwrap_model(model)
    selected = _select(inner, up_to=up_to, patterns=patterns, default="all")
    changed = _set_requires_grad(inner, selected, True)
    names = [n for n, m in _norm_layers(inner) if f"{n}.running_mean" in selected]
    unfreeze_bn_stats(inner, names)
    return changed


class _EvalLockedTrain:
    """Replaces ``layer.train`` on one norm layer: any ``train(mode)`` means eval mode."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, mode: bool = True) -> nn.Module:
        from torch import nn

        return nn.Module.train(self.module, False)


def _keep_eval(module: nn.Module, args: Any) -> None:
    if module.training:
        module.training = False


def _hook_ids(module: nn.Module) -> list[int]:
    # The hook is found by identity (no handle is stored: deepcopy/pickle stay simple).
    return [k for k, fn in module._forward_pre_hooks.items() if fn is _keep_eval]


def freeze_bn_stats(model: nn.Module, names: Iterable[str] | None = None) -> list[str]:
    """Keep the named norm layers (default: all with running stats) in eval mode for good.

    Their running mean/var then stay as loaded while the rest of the model trains. Returns the
    names of the layers locked. Parameters are not touched (use :func:`freeze` for those).
    """
    inner = unwrap_model(model)
    wanted = None if names is None else set(names)
    locked = []
    for name, module in _norm_layers(inner):
        if wanted is not None and name not in wanted:
            continue
        module.train = _EvalLockedTrain(module)  # type: ignore[method-assign]
        if not _hook_ids(module):
            module.register_forward_pre_hook(_keep_eval)
        module.training = False
        locked.append(name)
    return locked


def unfreeze_bn_stats(model: nn.Module, names: Iterable[str] | None = None) -> list[str]:
    """Undo :func:`freeze_bn_stats`; the layers follow the model's train/eval mode again.

    A released layer takes the mode of its parent module right away.
    """
    inner = unwrap_model(model)
    wanted = None if names is None else set(names)
    parents = {id(child): parent for parent in inner.modules() for child in parent.children()}
    released = []
    for name, module in _norm_layers(inner):
        if (wanted is not None and name not in wanted) or not is_bn_frozen(module):
            continue
        module.__dict__.pop("train", None)
        for hook_id in _hook_ids(module):
            del module._forward_pre_hooks[hook_id]
        parent = parents.get(id(module), inner)
        module.training = parent.training
        released.append(name)
    return released


def is_bn_frozen(module: nn.Module) -> bool:
    """Whether :func:`freeze_bn_stats` locked this layer in eval mode."""
    return isinstance(module.__dict__.get("train"), _EvalLockedTrain)


def trainable_summary(model: nn.Module) -> str:
    """A table of trainable / frozen parameter counts per top-level module, with totals.

    Norm layers whose statistics are frozen (:func:`freeze_bn_stats`) are counted too.

    >>> import torchvision
    >>> print(trainable_summary(torchvision.models.resnet18()).splitlines()[-1])
    total      11,689,512             0          0

    Raises:
        Nothing: it reads ``requires_grad`` and counts.
    """
    inner = unwrap_model(model)
    rows: list[tuple[str, int, int, int]] = []
    own = list(inner.named_parameters(recurse=False))
    if own:
        rows.append(_row("(root)", (p for _, p in own), 0))
    for name, child in inner.named_children():
        bn_locked = sum(1 for _, m in _norm_layers(child) if is_bn_frozen(m))
        rows.append(_row(name, child.parameters(), bn_locked))
    total = (
        "total",
        sum(r[1] for r in rows),
        sum(r[2] for r in rows),
        sum(r[3] for r in rows),
    )
    width = max([len(r[0]) for r in rows] + [len("module")])
    head = f"{'module':<{width}}  {'trainable':>12}  {'frozen':>12}  {'bn frozen':>9}"
    lines = [head, "-" * len(head)]
    for name, trainable, frozen, bn in [*rows, total]:
        if name == "total":
            lines.append("-" * len(head))
        lines.append(f"{name:<{width}}  {trainable:>12,}  {frozen:>12,}  {bn:>9}")
    return "\n".join(lines)


def _row(name: str, params: Iterable[Any], bn_locked: int) -> tuple[str, int, int, int]:
    trainable = frozen = 0
    for p in params:
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    return (name, trainable, frozen, bn_locked)
