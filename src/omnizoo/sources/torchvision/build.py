"""Building torchvision models: the real builder with the real Weights member, parameters on
the meta device, omnizoo's verified bytes fitted by :func:`~omnizoo.loading.fit.fit_state_dict`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ...errors import CheckpointError, UnsupportedError
from ...loading.fit import check_strict, fit_state_dict, head_size
from ...loading.meta import materialize_, meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...loading.surgery import replace_classifier, replace_first_conv
from ...registry.card import ModelCard
from .features import feature_extractor
from .heads import transplant_heads, user_checkpoint_with_classes
from .upstream import meta_or_real, quiet, tvm, weights_hooks

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_request", "create"]


def check_request(card: ModelCard, request: CreateRequest) -> None:
    """Refuse, before any download, what torchvision models cannot do."""
    if request.features_only and card.task != "classification":
        raise UnsupportedError(
            f"{card.name}: features_only is supported for torchvision classification "
            f"backbones, not {card.task} models"
        )


def create(card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """See :meth:`omnizoo.sources.base.SourceAdapter.create`."""
    check_request(card, request)
    models = tvm()
    builder = models.get_model_builder(card.arch)
    weights = models.get_model_weights(card.arch)[card.tag] if card.tag else None
    kwargs = dict(request.kwargs)
    quantized = card.task == "quantized_classification"
    if quantized and weights is not None and request.has_weights:
        kwargs.setdefault("quantize", True)  # the quantized Weights enum needs it
    if _is_meta(request.device):
        model, report = _on_meta_device(card, request, builder, kwargs)
    elif not request.has_weights:
        model, report = _random_init(card, request, builder, kwargs)
    else:
        model, report = _pretrained(card, request, builder, weights, kwargs, quantized)
    if request.features_only:
        model = feature_extractor(model, card, request.out_indices)
    return model, report


def _is_meta(device: Any) -> bool:
    return device is not None and str(device) == "meta"


def _on_meta_device(
    card: ModelCard, request: CreateRequest, builder: Any, kwargs: dict[str, Any]
) -> tuple[Any, LoadReport]:
    """``device="meta"``: the architecture only, every tensor on meta; nothing is read."""
    import torch

    if request.num_classes is not None:
        kwargs["num_classes"] = request.num_classes
    with meta_params(), torch.device("meta"), quiet(), weights_hooks(skip_loads=True):
        model = builder(weights=None, **kwargs)
        if request.in_chans not in (None, 3):
            _require(card.first_conv, card, "in_chans")
            replace_first_conv(model, str(card.first_conv), int(request.in_chans or 3))
            _no_transform_input(model)
    if request.features_only:
        raise UnsupportedError(f"{card.name}: features_only needs real tensors, not device='meta'")
    return model, LoadReport(notes=["device='meta': architecture only, nothing loaded"])


def _random_init(
    card: ModelCard, request: CreateRequest, builder: Any, kwargs: dict[str, Any]
) -> tuple[Any, LoadReport]:
    """Upstream's own init, draw for draw (a seeded build equals torchvision's); a default
    ``weights_backbone`` is fetched through the verified cache, as torchvision would load it."""
    if request.num_classes is not None:
        kwargs["num_classes"] = request.num_classes
    with quiet(), weights_hooks():
        model = builder(weights=None, **kwargs)
    report = LoadReport(notes=["random init (no weights requested)"])
    if request.in_chans not in (None, 3):
        _require(card.first_conv, card, "in_chans")
        with meta_params():
            keys = replace_first_conv(model, str(card.first_conv), int(request.in_chans or 3))
        materialize_(model)
        report.reinitialized.extend(keys)
        _no_transform_input(model)
    return model, report


def _pretrained(
    card: ModelCard,
    request: CreateRequest,
    builder: Any,
    weights: Any,
    kwargs: dict[str, Any],
    quantized: bool,
) -> tuple[Any, LoadReport]:
    path = request.weights_path
    state_dict = request.read_weights()
    report = LoadReport(source_file=str(path) if path is not None else None)
    num_classes = head_size(card, request, state_dict, classifier=card.classifier[-1:])
    want_head = num_classes is not None and num_classes != card.num_classes
    want_stem = request.in_chans not in (None, 3)
    transplant = False  # a new class-count head for a detection/segmentation/video model
    if (want_head or want_stem) and card.task != "classification":
        if want_stem or not card.num_classes or quantized:
            raise UnsupportedError(
                f"{card.name}: in_chans with pretrained weights is supported for torchvision "
                f"classification models, not {card.task}; build with pretrained=False and "
                "load your own weights"
                if want_stem
                else f"{card.name}: a {card.task} model has no class head to resize "
                f"(num_classes={num_classes})"
            )
        if request.user_checkpoint:
            # The user's file was trained with num_classes outputs: build that model.
            model = user_checkpoint_with_classes(
                card, request, builder, kwargs, state_dict, int(num_classes or 0), report
            )
            return model, report
        transplant, want_head = True, False
    if want_head:
        _require(card.classifier, card, "num_classes")
    if want_stem:
        _require(card.first_conv, card, "in_chans")

    def load(model: nn.Module, sd: dict[str, Any]) -> None:
        reinit: list[str] = []
        if want_stem:
            with meta_params():
                replace_first_conv(model, str(card.first_conv), int(request.in_chans or 3))
        if want_head:
            present = [h for h in card.classifier if _has_module(model, h)]
            with meta_params():
                reinit = replace_classifier(model, present, int(num_classes or 0))
        if quantized:  # packed quantized params cannot be assigned: a plain copy load
            _copy_load(model, sd, report, request, card)
            return
        fit_state_dict(model, sd, card, request, report=report, reinitialize=reinit)

    def build(meta: bool) -> tuple[Any, list[bool]]:
        ctx = meta_params() if meta else contextlib.nullcontext()
        if weights is None:  # a user checkpoint for a builder without published weights
            with ctx, quiet(), weights_hooks():
                built = builder(weights=None, **kwargs)
            load(built, state_dict)
            return built, [True]
        with weights_hooks(weights, state_dict, load) as seen, ctx, quiet():
            built = builder(weights=weights, **kwargs)
        return built, seen

    model, seen = meta_or_real(build, meta=not quantized)
    if not seen:
        raise CheckpointError(f"torchvision's {card.arch} builder did not load weights")
    if want_stem:
        _no_transform_input(model)
    if transplant:
        model = transplant_heads(model, card, builder, kwargs, int(num_classes or 0), report)
    return model, report


def _copy_load(
    model: nn.Module,
    sd: dict[str, Any],
    report: LoadReport,
    request: CreateRequest,
    card: ModelCard,
) -> None:
    plain: dict[str, Any] = OrderedDict(sd)
    if getattr(sd, "_metadata", None) is not None:
        plain._metadata = sd._metadata  # type: ignore[attr-defined]
    result = model.load_state_dict(plain, strict=False)
    missing = list(result.missing_keys)
    unexpected = list(result.unexpected_keys)
    check_strict(
        LoadReport(missing=missing, unexpected=unexpected), strict=request.strict, name=card.name
    )
    report.missing.extend(missing)
    report.unexpected.extend(unexpected)
    report.loaded.extend(k for k in sd if k not in set(unexpected))


def _require(value: Any, card: ModelCard, what: str) -> None:
    if not value:
        raise UnsupportedError(f"{card.name}: {what} cannot be adapted (no stem/head recorded)")


def _has_module(model: nn.Module, path: str) -> bool:
    try:
        return model.get_submodule(path) is not None
    except AttributeError:
        return False


def _no_transform_input(model: nn.Module) -> None:
    # Inception/GoogLeNet re-normalise 3 RGB channels when transform_input is set.
    if getattr(model, "transform_input", False):
        setattr(model, "transform_input", False)  # noqa: B010
