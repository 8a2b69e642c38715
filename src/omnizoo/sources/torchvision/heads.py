"""A head of another class count for torchvision's detection, segmentation and video models.

torchvision refuses ``num_classes`` together with ``weights`` for these tasks; its fine-tuning
tutorials build the pretrained model and swap the predictor by hand. :func:`transplant_heads`
does that swap for every such builder; :func:`user_checkpoint_with_classes` builds a model for a
user's own checkpoint of another class count.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import TYPE_CHECKING, Any

from ...errors import UnsupportedError
from ...loading.fit import load_into
from ...loading.heads import set_submodule
from ...loading.meta import meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...values.card import ModelCard
from .upstream import meta_or_real, quiet, weights_hooks

if TYPE_CHECKING:
    from torch import nn

__all__ = ["template_kwargs", "transplant_heads", "user_checkpoint_with_classes"]


def user_checkpoint_with_classes(
    card: ModelCard,
    request: CreateRequest,
    builder: Any,
    kwargs: dict[str, Any],
    state_dict: dict[str, Any],
    num_classes: int,
    report: LoadReport,
) -> Any:
    """A detection/segmentation/video checkpoint of the user's, for a ``num_classes`` model: a
    file trained with that many classes loads whole; a head of another size (e.g. the
    COCO-pretrained file itself) is left at torchvision's fresh initialisation and reported as
    re-initialised, like a classification head."""
    kwargs = template_kwargs(builder, kwargs, num_classes)
    if "aux_loss" in inspect.signature(builder).parameters:
        kwargs.setdefault("aux_loss", any(k.startswith("aux_classifier.") for k in state_dict))

    def make(meta: bool) -> Any:
        with meta_params() if meta else contextlib.nullcontext(), quiet(), weights_hooks():
            return builder(weights=None, **kwargs)

    model = meta_or_real(make)
    own = model.state_dict()
    misfit = [k for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if misfit:
        # Real init this time, so that the new head gets torchvision's own initialisation
        # (e.g. RetinaNet's prior-probability bias), which a meta build would not record.
        model = make(meta=False)
        dropped = set(misfit)
        state_dict = {k: v for k, v in state_dict.items() if k not in dropped}
        report.notes.append(f"new {num_classes}-class head: {len(misfit)} tensors")
    load_into(
        model,
        state_dict,
        report=report,
        reinitialize=misfit,
        strict=request.strict,
        name=card.name,
    )
    return model


def template_kwargs(builder: Any, kwargs: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """The builder's kwargs for a random-init template with ``num_classes`` (no backbone)."""
    out = dict(kwargs, num_classes=num_classes)
    if "weights_backbone" in inspect.signature(builder).parameters:
        out["weights_backbone"] = None  # never download a backbone for a template
    return out


def _plain_attrs(module: nn.Module) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple))
    }


def transplant_heads(
    model: nn.Module,
    card: ModelCard,
    builder: Any,
    kwargs: dict[str, Any],
    num_classes: int,
    report: LoadReport,
) -> nn.Module:
    """Give a pretrained detection/segmentation/video model a ``num_classes`` head.

    torchvision refuses ``num_classes`` together with ``weights`` for these tasks; its
    fine-tuning tutorials build the pretrained model and swap the predictor by hand. This does
    the swap for every such builder: a template of the same builder with ``num_classes`` is
    built (random init, torchvision's own head initialisation), the tensors whose shapes
    differ name the class-dependent modules, and those modules (raised to the enclosing module
    that stores the class count, e.g. RetinaNet's classification head) move into the
    pretrained model. Inside them, every tensor whose shape did not change is copied from the
    pretrained model; everything else keeps its pretrained weights too.
    """
    import torch

    tkwargs = template_kwargs(builder, kwargs, num_classes)
    if "aux_loss" in inspect.signature(builder).parameters:
        tkwargs.setdefault("aux_loss", getattr(model, "aux_classifier", None) is not None)
    with quiet():
        template = builder(weights=None, **tkwargs)
    ours, theirs = model.state_dict(), template.state_dict()
    changed = [k for k in theirs if k in ours and tuple(ours[k].shape) != tuple(theirs[k].shape)]
    only_one = sorted((set(ours) ^ set(theirs)) - {k for k in ours if "num_batches_tracked" in k})
    only_one = [k for k in only_one if not k.endswith("num_batches_tracked")]
    if not changed or only_one:
        raise UnsupportedError(
            f"{card.name}: cannot find the class head for num_classes={num_classes} "
            f"(tensors that differ in shape: {changed[:4]}; in only one model: {only_one[:4]})"
        )
    own_modules = dict(model.named_modules())
    new_modules = dict(template.named_modules())
    roots: list[str] = []
    for key in changed:
        path = owner = key.rpartition(".")[0]
        # The highest enclosing module that records a size that changed (e.g. SSD's
        # classification head keeps num_columns two levels above the convolutions).
        parts = owner.split(".")
        for depth in range(1, len(parts)):
            above = ".".join(parts[:depth])
            if (
                above in own_modules
                and above in new_modules
                and _plain_attrs(own_modules[above]) != _plain_attrs(new_modules[above])
            ):
                path = above
                break
        if not path:
            raise UnsupportedError(
                f"{card.name}: num_classes changes the whole model; build it with "
                "pretrained=False and num_classes, then load the weights that fit"
            )
        if not any(path == r or path.startswith(r + ".") for r in roots):
            roots = [r for r in roots if not r.startswith(path + ".")] + [path]
    # Sizes the model object itself records (swin3d keeps num_classes on the model).
    for attr, value in _plain_attrs(template).items():
        if _plain_attrs(model).get(attr, value) != value:
            setattr(model, attr, value)
    param = next(iter(model.parameters()), None)
    fresh: list[str] = []
    with torch.no_grad():
        for path in roots:
            head = new_modules[path]
            if param is not None:
                head = head.to(device=param.device, dtype=param.dtype)
            # Inside the moved module, what does not depend on the class count keeps its
            # pretrained values (RetinaNet's conv tower, SSDlite's depthwise blocks): the same
            # result as torchvision's recipe of replacing only the last layer by hand.
            old = own_modules[path].state_dict()
            for key, value in head.state_dict().items():
                kept = old.get(key)
                if kept is not None and tuple(kept.shape) == tuple(value.shape):
                    value.copy_(kept)
                else:
                    fresh.append(f"{path}.{key}")
            set_submodule(model, path, head)
    fresh_set = set(fresh)
    report.loaded[:] = [k for k in report.loaded if k not in fresh_set]
    report.reinitialized.extend(fresh)
    report.notes.append(
        f"new {num_classes}-class head: {', '.join(roots)} (torchvision's own initialisation)"
    )
    return model
