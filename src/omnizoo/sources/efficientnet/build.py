"""Building lukemelas EfficientNets and fitting verified files into them (through the build
skeleton, :func:`~omnizoo.loading.build.build_model`); ``features_only``."""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedError
from ...loading.build import Upstream, build_model
from ...loading.fit import FitPlan, fit_state_dict
from ...loading.heads import replace_classifier
from ...loading.meta import meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...values.card import ModelCard
from ..features import FeatureInfo, take_indices
from .cards import override_params

__all__ = ["create", "features_model"]

#: timm's default for features_only models: the five stage outputs.
DEFAULT_OUT_INDICES = (0, 1, 2, 3, 4)


def create(card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """See :meth:`omnizoo.sources.base.SourceAdapter.create`."""
    return build_model(card, request, _EfficientNetUpstream(card, request))


class _EfficientNetUpstream(Upstream):
    """``EfficientNet.from_name`` with upstream's own stem for ``in_chans``; a new ``_fc`` for
    ``num_classes``; :func:`features_model` for ``features_only``."""

    def __init__(self, card: ModelCard, request: CreateRequest) -> None:
        from efficientnet_pytorch import EfficientNet

        super().__init__(card, request)
        self.cls = EfficientNet
        self.params = override_params(request.kwargs)
        self.params.setdefault(
            "image_size", int(card.extra.get("resolution", card.data.input_size[1]))
        )
        self.in_chans = request.in_chans if request.in_chans not in (None, 3) else None

    def build(self, num_classes: int | None) -> Any:
        classes = 1000 if num_classes is None else num_classes
        return _build(self.cls, self.card, classes, self.params, self.in_chans)

    def sizing_classifier(self) -> tuple[str, ...]:
        return ("_fc",)

    def load(
        self, state_dict: dict[str, Any], plan: FitPlan, report: LoadReport
    ) -> tuple[Any, LoadReport]:
        num_classes = plan.num_classes
        with meta_params():
            # upstream's own stem constructor (Conv2dStaticSamePadding); fit adapts the
            # pretrained stem weight (upstream would leave the new stem randomly initialised)
            model = self.build(1000)
            reinit: list[str] = []
            if num_classes is not None and num_classes != 1000:
                reinit = replace_classifier(model, ["_fc"], num_classes)
                model._global_params = model._global_params._replace(num_classes=num_classes)
        report = fit_state_dict(model, state_dict, plan.replace(reinitialize=reinit), report)
        model.num_classes = num_classes if num_classes is not None else 1000
        return model, report

    def finish(self, model: Any, report: LoadReport) -> Any:
        if self.request.features_only:
            return features_model(model, self.card, self.request.out_indices)
        if self.request.out_indices is not None:
            raise UnsupportedError("out_indices= needs features_only=True")
        return model


def _build(cls: Any, card: ModelCard, classes: int, params: dict[str, Any], in_chans: Any) -> Any:
    model = cls.from_name(card.arch, num_classes=classes, **params)
    if in_chans is not None:
        model._change_in_channels(in_chans)
    # plain swish: identical outputs, and the model exports to ONNX / scripts
    model.set_swish(memory_efficient=False)
    model.num_classes = classes
    return model


def _features_class() -> type:
    from torch import nn

    class EfficientNetFeatures(nn.Module):
        """``features_only`` wrapper: the ``extract_endpoints`` maps at ``out_indices``.

        Level ``i`` is upstream's ``reduction_{i+1}`` (strides 2, 4, 8, 16, 32; level 5 is the
        1x1 head conv's output at stride 32).
        """

        def __init__(self, model: nn.Module, info: FeatureInfo):
            super().__init__()
            self.model = model
            # the classifier is not part of a feature extractor
            if hasattr(model, "_fc"):
                del model._fc
                del model._dropout
            self.out_indices = tuple(info.out_indices)
            self.feature_info = info

        def forward(self, x: Any) -> list[Any]:
            model: Any = self.model
            endpoints = model.extract_endpoints(x)
            return [endpoints[f"reduction_{i + 1}"] for i in self.out_indices]

    return EfficientNetFeatures


def features_model(model: Any, card: ModelCard, out_indices: Any) -> Any:
    """Wrap ``model`` as a features_only extractor (levels found by a small probe pass)."""
    import torch

    indices = DEFAULT_OUT_INDICES if out_indices is None else out_indices
    chosen = take_indices(6, indices, name=card.name)
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        x = torch.zeros(1, int(model._conv_stem.in_channels), 64, 64, dtype=dtype)
        endpoints = model.extract_endpoints(x)
    model.train(was_training)
    modules = ["_blocks"] * 5 + ["_conv_head"]
    info = [
        {
            "num_chs": int(endpoints[f"reduction_{i + 1}"].shape[1]),
            "reduction": 2 ** min(i + 1, 5),
            "module": modules[i],
        }
        for i in range(6)
    ]
    return _features_class()(model, FeatureInfo(info, chosen))
