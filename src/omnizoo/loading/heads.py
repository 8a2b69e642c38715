"""Classifier heads, in one place: find them, tell their width, make a new one, set it.

Every layer that touches a head uses these: the build skeleton (:mod:`.build`) and the sources
(a head of another size for ``num_classes``), fine-tuning (``reset_classifier``, freezing,
parameter groups), the card kept true to the model (``registry.derive``) and BatchNorm folding
(``set_submodule``).

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
A model registered with ``register_model`` and no ``classifier=`` uses
:func:`find_last_layer` (its last Linear/Conv2d) instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, UnsupportedError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "classifier_width",
    "find_classifier",
    "find_last_layer",
    "find_layers_of_width",
    "head_width",
    "new_head",
    "replace_classifier",
    "set_submodule",
    "timm_classifier_paths",
    "unwrap_model",
]

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


def timm_classifier_paths(model: nn.Module) -> list[str]:
    """The module paths of what timm's ``get_classifier()`` returns (empty for other models)."""
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
    paths = timm_classifier_paths(model)
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


def find_last_layer(model: nn.Module) -> tuple[str, ...]:
    """The last Linear/Conv2d of the model: the head of a registered model whose card names
    none (``register_model(..., classifier=None)``)."""
    from torch import nn

    last = None
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = path
    if last is None:
        raise UnsupportedError(
            f"{type(model).__name__} has no Linear/Conv2d layer to use as its classifier; "
            "register the model with classifier='...'"
        )
    return (last,)


def find_layers_of_width(model: nn.Module, width: int) -> tuple[str, ...]:
    """Every Linear/Conv2d with ``width`` outputs, in module order: the heads of a model built
    with a known class count (torchvision's cards: the 1000-way heads)."""
    from torch import nn

    return tuple(
        path
        for path, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d)) and head_width(model, path) == width
    )


def _dedupe(paths: Any) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def head_width(model: Any, path: str) -> int | None:
    """The number of outputs of the layer at ``path`` (``out_features``/``out_channels``, of
    its last such layer for a ``Sequential``; 0 for an ``Identity``), or None when the model has
    no such layer or its width cannot be told."""
    get = getattr(model, "get_submodule", None)
    if get is None:
        return None
    try:
        module = get(path)
    except (AttributeError, TypeError):
        return None
    size = _width(module)
    if size is None and type(module).__name__ == "Sequential":
        # a head replaced by hand as Sequential(Dropout, Linear(512, 3)): its last layer
        # that has a width is what the model outputs
        for child in reversed(list(module.children())):
            size = _width(child)
            if size is not None:
                break
    if size is None and type(module).__name__ == "Identity":
        size = 0
    return size


def _width(module: Any) -> int | None:
    size = getattr(module, "out_features", None)
    if size is None:
        size = getattr(module, "out_channels", None)
    return size if isinstance(size, int) else None


def classifier_width(model: Any, paths: Sequence[str]) -> int | None:
    """The width of the last of ``paths`` that the model has (see :func:`head_width`)."""
    found: int | None = None
    for path in paths:
        size = head_width(model, path)
        if size is not None:
            found = size
    return found


def new_head(old: nn.Module, num_classes: int, *, device: Any = None) -> nn.Module | None:
    """A fresh head like ``old`` (Linear, or a Conv2d's kernel/stride/padding) with
    ``num_classes`` outputs, in ``old``'s dtype; ``nn.Identity`` for ``num_classes=0``; None
    when ``old`` is neither a Linear nor a Conv2d. ``device``: where the new tensors live
    (None: ``old``'s device, the CPU when that is meta)."""
    from torch import nn

    if num_classes == 0:
        return nn.Identity()
    weight = getattr(old, "weight", None)
    factory: dict[str, Any] = {}
    if weight is not None:
        factory = {"device": weight.device, "dtype": weight.dtype}
        if weight.device.type == "meta":
            factory["device"] = "cpu"
    if device is not None:
        factory["device"] = device
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
    if isinstance(old, nn.Conv2d):
        conv: Any = nn.Conv2d  # kernel/stride/padding are copied from an existing Conv2d
        return conv(
            old.in_channels,
            num_classes,
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            bias=old.bias is not None,
            **factory,
        )
    return None


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``path`` of ``model`` (its parent must exist)."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def replace_classifier(model: nn.Module, paths: Iterable[str], num_classes: int) -> list[str]:
    """Swap each head module (Linear or 1x1 Conv2d) for a fresh one with ``num_classes`` outputs.

    The new modules are created on the meta device; :func:`~.fit.load_into` /
    :func:`~.meta.materialize_` initialise them (``reset_parameters``). ``num_classes=0``
    replaces the head by Identity. Returns the state-dict keys of the new heads.
    """
    import torch

    keys: list[str] = []
    for path in paths:
        old = model.get_submodule(path)
        new = new_head(old, num_classes, device=torch.device("meta"))
        if new is None:
            raise CheckpointError(
                f"head {path} is a {type(old).__name__}; only Linear/Conv2d heads can be resized"
            )
        set_submodule(model, path, new)
        keys.extend(f"{path}.{k}" for k, _ in new.named_parameters())
    return keys
