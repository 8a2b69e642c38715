"""Classifier heads: find them in any model, and replace them for a new number of classes.

:func:`reset_classifier` works on plain ``nn.Module`` objects from every source library, with
or without an omnizoo card attached:

* **timm** models are reset with their own ``reset_classifier`` (it knows each family's
  pooling/head quirks), then the new head is initialised with the chosen scheme;
* every other model has its head module(s) *found* and swapped for a fresh ``nn.Linear`` (or a
  1x1 ``nn.Conv2d`` where the head is a conv: SqueezeNet, Cadene's DPN) of the same
  ``in_features``, device and dtype.

How a head is found, how wide it is and how a new one is made is
:mod:`omnizoo.loading.heads` (:func:`find_classifier` is re-exported here).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, UnsupportedError
from ..loading.heads import (
    find_classifier,
    new_head,
    set_submodule,
    timm_classifier_paths,
    unwrap_model,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["INIT_SCHEMES", "find_classifier", "init_head", "reset_classifier", "unwrap_model"]

#: The initialisation schemes :func:`reset_classifier` accepts by name (biases always start at 0).
#:
#: ``trunc_normal``: N(0, 0.02) truncated at ±2σ (timm's ViT/ConvNeXt heads);
#: ``normal``: N(0, 0.01) (torchvision's ResNet/VGG/EfficientNet heads);
#: ``xavier``: Glorot uniform; ``kaiming``: He normal, fan-in, linear gain (std 1/sqrt(fan_in));
#: ``zeros``: all zeros (a common choice for fine-tuning transformers; gradients still flow).
INIT_SCHEMES = ("trunc_normal", "normal", "xavier", "kaiming", "zeros")


def init_head(module: nn.Module, init: str | Callable[[nn.Module], None] = "trunc_normal") -> None:
    """Initialise every Linear/Conv2d weight in ``module`` with ``init``; biases to zero."""
    import torch
    from torch import nn

    if callable(init):
        init(module)
        return
    if init not in INIT_SCHEMES:
        raise ConfigurationError(
            f"init={init!r} is not a known scheme; use one of {', '.join(INIT_SCHEMES)} "
            "or a callable(module)"
        )
    with torch.no_grad():
        for layer in module.modules():
            if not isinstance(layer, (nn.Linear, nn.Conv2d)):
                continue
            weight = layer.weight
            if init == "trunc_normal":
                nn.init.trunc_normal_(weight, std=0.02, a=-0.04, b=0.04)
            elif init == "normal":
                nn.init.normal_(weight, std=0.01)
            elif init == "xavier":
                nn.init.xavier_uniform_(weight)
            elif init == "kaiming":
                fan_in = weight[0].numel()
                nn.init.normal_(weight, std=1.0 / math.sqrt(max(fan_in, 1)))
            else:  # zeros
                nn.init.zeros_(weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def reset_classifier(
    model: nn.Module,
    num_classes: int,
    *,
    init: str | Callable[[nn.Module], None] = "trunc_normal",
    labels: Sequence[str] | None = None,
    global_pool: str | None = None,
) -> nn.Module:
    """Give ``model`` a fresh classifier for ``num_classes`` classes, in place; returns it.

    ``num_classes=0`` removes the head (``nn.Identity``): the model then returns pooled
    features, as timm does. Every new head layer is initialised with ``init`` (one of
    :data:`INIT_SCHEMES`, or a callable taking the head module); biases start at zero.
    Auxiliary heads (Inception ``AuxLogits``, GoogLeNet ``aux1``/``aux2``) are reset too.

    A card attached as ``model.omnizoo_card`` is replaced by a copy with the new
    ``num_classes``, the ImageNet label set dropped: ``labels`` as its categories, or else
    ``class_0 .. class_{n-1}`` (``label_set="generic"``), and a note. ``global_pool`` is
    passed to timm's ``reset_classifier`` (timm models only).

    >>> import torchvision
    >>> m = reset_classifier(torchvision.models.resnet18(), 3)
    >>> m.fc
    Linear(in_features=512, out_features=3, bias=True)

    Raises:
        ConfigurationError: ``num_classes`` not an int >= 0, ``labels`` of another count, or
            an unknown ``init`` scheme.
        UnsupportedError: not a torch module (an ONNX model), ``global_pool`` for a model
            that is not timm's, or a head that is neither Linear nor Conv2d.
    """
    from torch import nn

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ConfigurationError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if labels is not None and len(labels) != num_classes:
        raise ConfigurationError(
            f"{len(labels)} labels given for num_classes={num_classes}; give one per class"
        )
    if isinstance(init, str) and init not in INIT_SCHEMES:
        init_head(nn.Identity(), init)  # raises the ConfigurationError with the choices
    inner = unwrap_model(model)
    if not isinstance(inner, nn.Module):
        raise UnsupportedError(
            f"{type(inner).__name__} is not a torch nn.Module (an ONNX-backed model?); "
            "its classifier cannot be reset"
        )

    timm_reset = getattr(inner, "reset_classifier", None)
    if callable(timm_reset) and callable(getattr(inner, "get_classifier", None)):
        if global_pool is None:
            timm_reset(num_classes)
        else:
            timm_reset(num_classes, global_pool)
        paths = timm_classifier_paths(inner)
        for path in paths:
            init_head(inner.get_submodule(path), init)
    else:
        if global_pool is not None:
            raise UnsupportedError(
                f"global_pool is only supported for timm models, not {type(inner).__name__}"
            )
        paths = find_classifier(inner)
        for path in paths:
            old = inner.get_submodule(path)
            if isinstance(old, nn.Identity):
                if num_classes == 0:
                    continue
                raise UnsupportedError(
                    f"{path} of {type(inner).__name__} is an Identity (features-only head); "
                    "its input width is unknown, so a new classifier cannot be sized. Build the "
                    "model with its head (create_model(name, num_classes=N)) instead"
                )
            new = new_head(old, num_classes)
            if new is None:
                raise UnsupportedError(  # Identity heads are handled above
                    f"head of type {type(old).__name__} is neither nn.Linear nor nn.Conv2d"
                )
            init_head(new, init)
            set_submodule(inner, path, new)
        _sync_num_classes_attrs(inner, num_classes)

    _update_card(inner, num_classes, init, labels)
    return model


def _update_card(
    model: nn.Module,
    num_classes: int,
    init: str | Callable[[nn.Module], None],
    labels: Sequence[str] | None,
) -> None:
    from ..values.card import ModelCard

    card = getattr(model, "omnizoo_card", None)
    if not isinstance(card, ModelCard):
        return
    from ..values.relabel import with_labels

    scheme = init if isinstance(init, str) else "custom"
    if num_classes:
        why = f"classifier reset to {num_classes} classes ({scheme} init); the head is untrained"
    else:
        why = "classifier removed (num_classes=0): the model returns pooled features"
    new_card = dataclasses.replace(
        with_labels(card, num_classes, labels, why=why),
        output="logits",
        task="features" if num_classes == 0 else card.task,
    )
    # Cards are frozen: a new one replaces the old (plain attribute, not a submodule).
    model.__dict__["omnizoo_card"] = new_card


def _sync_num_classes_attrs(model: nn.Module, num_classes: int) -> None:
    """Keep the bookkeeping attributes some libraries read in forward() consistent."""
    if isinstance(getattr(model, "num_classes", None), int):
        model.__dict__["num_classes"] = num_classes  # torchvision SqueezeNet, Cadene
    params = getattr(model, "_global_params", None)  # lukemelas EfficientNet (a namedtuple)
    if params is not None and hasattr(params, "_replace") and hasattr(params, "num_classes"):
        model._global_params = params._replace(num_classes=num_classes)
