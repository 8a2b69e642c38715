"""Classifier heads: find them in any model, and replace them for a new number of classes.

:func:`reset_classifier` works on plain ``nn.Module`` objects from every source library, with
or without an omnizoo card attached:

* **timm** models are reset with their own ``reset_classifier`` (it knows each family's
  pooling/head quirks), then the new head is initialised with the chosen scheme;
* every other model has its head module(s) *found* and swapped for a fresh ``nn.Linear`` (or a
  1x1 ``nn.Conv2d`` where the head is a conv: SqueezeNet, Cadene's DPN) of the same
  ``in_features``, device and dtype.

How a head is found (:func:`find_classifier`), first rule that gives an answer wins:

1. ``model.omnizoo_card.classifier``: the state-dict prefixes the registry recorded;
2. timm's ``get_classifier()``;
3. known attribute names: ``last_linear`` / ``last_conv`` (Cadene), ``_fc`` (lukemelas
   EfficientNet), ``fc`` (+ Inception ``AuxLogits`` / GoogLeNet ``aux1``/``aux2``),
   ``heads`` (torchvision ViT), ``classifier``, ``head``;
4. the last ``nn.Linear`` of the model.

A prefix naming a container (``classifier`` of VGG = ``Sequential(..., Linear)``) resolves to
the *last* ``Linear``/``Conv2d`` inside it: ``classifier[-1]`` for VGG/AlexNet/MobileNet/
EfficientNet/MaxViT, ``classifier[2]`` for ConvNeXt, ``classifier[1]`` (a conv) for SqueezeNet.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, UnsupportedError

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

# Top-level attribute names tried (rule 3), main head first, then auxiliary heads.
_KNOWN_HEADS: tuple[tuple[str, ...], ...] = (
    ("last_linear",),  # Cadene pretrainedmodels
    ("last_conv",),  # Cadene SqueezeNet (a 1x1 conv head)
    ("_fc",),  # lukemelas efficientnet_pytorch
    ("fc", "AuxLogits", "aux1", "aux2"),  # ResNet/RegNet/ShuffleNet/Inception/GoogLeNet
    ("heads",),  # torchvision ViT (heads.head)
    # VGG/AlexNet/MobileNet/EfficientNet/ConvNeXt/DenseNet/SqueezeNet/MNASNet/MaxViT
    ("classifier",),
    ("head",),  # torchvision Swin, many others
)


# features_only wrappers: timm's, and omnizoo's torchvision one (around a torch.fx GraphModule)
_FEATURE_WRAPPERS = frozenset(
    {"FeatureListNet", "FeatureDictNet", "FeatureHookNet", "FeatureGetterNet", "FeatureList"}
)


def unwrap_model(model: Any) -> Any:
    """The module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    seen = 0
    while seen < 8:
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if inner is None and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            inner = getattr(model, "module", None)
        if inner is None:
            return model
        model = inner
        seen += 1
    return model


def _is_head_layer(module: nn.Module) -> bool:
    from torch import nn

    return isinstance(module, (nn.Linear, nn.Conv2d, nn.Identity))


def _resolve_head(model: nn.Module, prefix: str) -> str | None:
    """The dotted path of the head layer a card/attribute prefix points at, or None."""
    from torch import nn

    prefix = prefix.rstrip(".")
    # Card prefixes are state-dict prefixes; "head.fc.weight"-style full keys are tolerated.
    for suffix in (".weight", ".bias"):
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    try:
        module = model.get_submodule(prefix) if prefix else model
    except AttributeError:
        return None
    if module is None:
        return None
    if _is_head_layer(module):
        return prefix
    last: str | None = None
    for name, sub in module.named_modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            last = name
    if last is None:
        # A container whose head was already replaced by Identity (num_classes=0).
        for name, sub in module.named_modules():
            if isinstance(sub, nn.Identity):
                last = name
    if last is None:
        return None
    return f"{prefix}.{last}" if prefix else last


def _timm_classifier_paths(model: nn.Module) -> list[str]:
    get_classifier = getattr(model, "get_classifier", None)
    if not callable(get_classifier):
        return []
    try:
        heads = get_classifier()
    except Exception:  # pragma: no cover - a get_classifier that needs arguments
        return []
    if not isinstance(heads, (tuple, list)):
        heads = (heads,)
    wanted = {id(h) for h in heads if h is not None}
    return [name for name, module in model.named_modules() if id(module) in wanted and name]


def find_classifier(model: nn.Module) -> list[str]:
    """Dotted module paths of the model's classifier head(s), main head first.

    See the module docstring for the rules. Raises :class:`~omnizoo.errors.UnsupportedError`
    when no head can be found (a features-only model, an ONNX-backed model).

    >>> import torchvision
    >>> find_classifier(torchvision.models.inception_v3(init_weights=False))
    ['fc', 'AuxLogits.fc']
    """
    import torch
    from torch import nn

    model = unwrap_model(model)
    if not isinstance(model, nn.Module):
        raise UnsupportedError(
            f"{type(model).__name__} is not a torch nn.Module (an ONNX-backed model?); "
            "its classifier cannot be changed"
        )
    if type(model).__name__ in _FEATURE_WRAPPERS or isinstance(model, torch.fx.GraphModule):
        raise UnsupportedError(
            f"{type(model).__name__} is a features-only model (it returns feature maps); it has "
            "no classifier head. Build the model without features_only to get one"
        )
    card = getattr(model, "omnizoo_card", None)
    prefixes = tuple(getattr(card, "classifier", ()) or ())
    paths = _dedupe(p for p in (_resolve_head(model, pre) for pre in prefixes) if p)
    if paths:
        return paths
    paths = _timm_classifier_paths(model)
    if paths:
        return paths
    for group in _KNOWN_HEADS:
        if getattr(model, group[0], None) is None or not isinstance(
            getattr(model, group[0]), nn.Module
        ):
            continue
        paths = _dedupe(p for p in (_resolve_head(model, name) for name in group) if p)
        if paths:
            return paths
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last:
        return [last]
    raise UnsupportedError(
        f"cannot find a classifier head in {type(model).__name__}: no card prefix, no timm "
        "get_classifier(), none of the known attributes (fc, classifier, head, heads, "
        "last_linear, last_conv, _fc) and no nn.Linear"
    )


def _dedupe(paths: Any) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


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


def _new_head(old: nn.Module, num_classes: int) -> nn.Module:
    from torch import nn

    if num_classes == 0:
        return nn.Identity()
    weight = getattr(old, "weight", None)
    factory = {"device": weight.device, "dtype": weight.dtype} if weight is not None else {}
    if weight is not None and weight.device.type == "meta":
        factory["device"] = "cpu"
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(
            old.in_channels,
            num_classes,
            kernel_size=old.kernel_size,  # type: ignore[arg-type]
            stride=old.stride,  # type: ignore[arg-type]
            padding=old.padding,  # type: ignore[arg-type]
            bias=old.bias is not None,
            **factory,
        )
    raise UnsupportedError(  # Identity heads are handled by the caller
        f"head of type {type(old).__name__} is neither nn.Linear nor nn.Conv2d"
    )


def _in_features(model: nn.Module, path: str) -> int | None:
    from torch import nn

    layer = model.get_submodule(path)
    if isinstance(layer, nn.Linear):
        return int(layer.in_features)
    if isinstance(layer, nn.Conv2d):
        return int(layer.in_channels)
    return None


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


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
        paths = _timm_classifier_paths(inner)
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
            new = _new_head(old, num_classes)
            init_head(new, init)
            _set_submodule(inner, path, new)
        _sync_num_classes_attrs(inner, num_classes)

    _update_card(inner, num_classes, init, labels)
    return model


def _update_card(
    model: nn.Module,
    num_classes: int,
    init: str | Callable[[nn.Module], None],
    labels: Sequence[str] | None,
) -> None:
    from ..registry.card import ModelCard

    card = getattr(model, "omnizoo_card", None)
    if not isinstance(card, ModelCard):
        return
    from ..registry.derive import with_labels

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
