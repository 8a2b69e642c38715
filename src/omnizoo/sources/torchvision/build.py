"""Building torchvision models through the build skeleton
(:func:`~omnizoo.loading.build.build_model`): the real builder with the real Weights member,
parameters on the meta device, omnizoo's verified bytes fitted by
:func:`~omnizoo.loading.fit.fit_state_dict`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ...errors import CheckpointError, UnsupportedError
from ...loading.build import Upstream, build_model
from ...loading.fit import FitPlan, check_strict, fit_state_dict
from ...loading.heads import replace_classifier
from ...loading.meta import materialize_, meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...loading.surgery import replace_first_conv
from ...values.card import ModelCard
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
    return build_model(card, request, _TorchvisionUpstream(card, request))


class _TorchvisionUpstream(Upstream):
    """torchvision's own builder, called with its real Weights member (so every
    weights-dependent choice it makes is kept) while :func:`weights_hooks` hands it omnizoo's
    verified bytes; a stem for ``in_chans``; a head for ``num_classes`` (classification), or a
    transplanted one (detection, segmentation, video)."""

    def __init__(self, card: ModelCard, request: CreateRequest) -> None:
        super().__init__(card, request)
        models = tvm()
        self.builder = models.get_model_builder(card.arch)
        self.weights = models.get_model_weights(card.arch)[card.tag] if card.tag else None
        self.kwargs = dict(request.kwargs)
        self.quantized = card.task == "quantized_classification"
        if self.quantized and self.weights is not None and request.has_weights:
            self.kwargs.setdefault("quantize", True)  # the quantized Weights enum needs it

    def build_meta(self) -> Any:
        card, request, kwargs = self.card, self.request, self.kwargs
        # pretrained=True on meta: the architecture of these weights (a Weights member can
        # change it: ViT SWAG E2E is built at 384/512/518 pixels), with nothing loaded
        weights = self.weights if request.pretrained and not self.quantized else None
        new_head = request.num_classes is not None and request.num_classes != card.num_classes
        if weights is not None and new_head and card.task != "classification":
            weights = None  # no head to replace: the plain builder with num_classes
        if request.num_classes is not None and (weights is None or not new_head):
            kwargs["num_classes"] = request.num_classes
        with quiet(), weights_hooks(skip_loads=True):
            try:
                model = self.builder(weights=weights, **kwargs)
            except NotImplementedError:
                # a builder that reads tensor values while building (regnet's block widths
                # end in .tolist()) cannot run inside torch.device("meta"): its tensors are
                # made on the CPU, its parameters still on meta (meta_params), its buffers
                # moved to meta by the skeleton
                import torch

                with torch.device("cpu"):
                    model = self.builder(weights=weights, **kwargs)
            if weights is not None and new_head:
                _require(card.classifier, card, "num_classes")
                present = [h for h in card.classifier if _has_module(model, h)]
                with meta_params():
                    replace_classifier(model, present, int(request.num_classes or 0))
            if request.in_chans not in (None, 3):
                _require(card.first_conv, card, "in_chans")
                replace_first_conv(model, str(card.first_conv), int(request.in_chans or 3))
                _no_transform_input(model)
        if request.features_only:
            raise UnsupportedError(
                f"{card.name}: features_only needs real tensors, not device='meta'"
            )
        return model

    def build_random(self, report: LoadReport) -> Any:
        """Upstream's own init, draw for draw (a seeded build equals torchvision's); a default
        ``weights_backbone`` is fetched through the verified cache, as torchvision would."""
        card, request, kwargs = self.card, self.request, self.kwargs
        if request.num_classes is not None:
            kwargs["num_classes"] = request.num_classes
        with quiet(), weights_hooks():
            model = self.builder(weights=None, **kwargs)
        if request.in_chans not in (None, 3):
            _require(card.first_conv, card, "in_chans")
            with meta_params():
                keys = replace_first_conv(model, str(card.first_conv), int(request.in_chans or 3))
            materialize_(model)
            report.reinitialized.extend(keys)
            _no_transform_input(model)
        return model

    def sizing_classifier(self) -> tuple[str, ...]:
        return tuple(self.card.classifier[-1:])

    def load(
        self, state_dict: dict[str, Any], plan: FitPlan, report: LoadReport
    ) -> tuple[Any, LoadReport]:
        card, request, kwargs = self.card, self.request, self.kwargs
        builder, weights, quantized = self.builder, self.weights, self.quantized
        num_classes = plan.num_classes
        want_head = num_classes is not None and num_classes != card.num_classes
        want_stem = request.in_chans not in (None, 3)
        transplant = False  # a new class-count head for a detection/segmentation/video model
        if (want_head or want_stem) and card.task != "classification":
            if want_stem or not card.num_classes or quantized:
                raise UnsupportedError(
                    f"{card.name}: in_chans with pretrained weights is supported for "
                    f"torchvision classification models, not {card.task}; build with "
                    "pretrained=False and load your own weights"
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
                _copy_load(model, sd, report, plan)
                return
            fit_state_dict(model, sd, plan.replace(reinitialize=reinit), report)

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

    def finish(self, model: Any, report: LoadReport) -> Any:
        if self.request.features_only:
            return feature_extractor(model, self.card, self.request.out_indices)
        return model


def _copy_load(model: nn.Module, sd: dict[str, Any], report: LoadReport, plan: FitPlan) -> None:
    plain: dict[str, Any] = OrderedDict(sd)
    if getattr(sd, "_metadata", None) is not None:
        plain._metadata = sd._metadata  # type: ignore[attr-defined]
    result = model.load_state_dict(plain, strict=False)
    missing = list(result.missing_keys)
    unexpected = list(result.unexpected_keys)
    check_strict(
        LoadReport(missing=missing, unexpected=unexpected), strict=plan.strict, name=plan.name
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
