"""Building lukemelas EfficientNets and fitting verified files into them; ``features_only``."""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedError
from ...loading.fit import fit_state_dict, head_size
from ...loading.meta import meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...loading.surgery import adapt_input_conv, replace_classifier
from ...registry.card import ModelCard
from ..features import FeatureInfo, take_indices
from .cards import override_params

__all__ = ["create", "features_model"]

#: timm's default for features_only models: the five stage outputs.
DEFAULT_OUT_INDICES = (0, 1, 2, 3, 4)


def create(card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """See :meth:`omnizoo.sources.base.SourceAdapter.create`."""
    import torch
    from efficientnet_pytorch import EfficientNet

    params = override_params(request.kwargs)
    params.setdefault("image_size", int(card.extra.get("resolution", card.data.input_size[1])))
    in_chans = request.in_chans if request.in_chans not in (None, 3) else None
    meta_device = request.device is not None and str(request.device) == "meta"
    if meta_device or not request.has_weights:
        classes = request.num_classes if request.num_classes is not None else 1000
        if meta_device:
            with meta_params(), torch.device("meta"):
                model = _build(EfficientNet, card, classes, params, in_chans)
            report = LoadReport(notes=["device='meta': architecture only, nothing loaded"])
        else:  # upstream's own random init, draw for draw
            model = _build(EfficientNet, card, classes, params, in_chans)
            report = LoadReport(notes=["random init (no weights requested)"])
    else:
        path = request.weights_path
        sd = request.read_weights()
        num_classes = head_size(card, request, sd, classifier="_fc")
        with meta_params():
            # upstream's own stem constructor (Conv2dStaticSamePadding); fit adapts the
            # pretrained stem weight (upstream would leave the new stem randomly initialised)
            model = _build(EfficientNet, card, 1000, params, in_chans)
            reinit: list[str] = []
            if num_classes is not None and num_classes != 1000:
                reinit = replace_classifier(model, ["_fc"], num_classes)
                model._global_params = model._global_params._replace(num_classes=num_classes)
        report = fit_state_dict(
            model,
            sd,
            card,
            request,
            report=LoadReport(source_file=str(path) if path is not None else None),
            adapt_stem=adapt_input_conv,
            reinitialize=reinit,
        )
        model.num_classes = num_classes if num_classes is not None else 1000
    if request.features_only:
        model = features_model(model, card, request.out_indices)
    elif request.out_indices is not None:
        raise UnsupportedError("out_indices= needs features_only=True")
    return model, report


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
