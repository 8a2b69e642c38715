"""Building lukemelas EfficientNets and loading verified files into them (create() only)."""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedError
from ..registry.card import ModelCard
from ..registry.loading import (
    adapt_input_conv,
    drop_unfitting,
    load_checkpoint,
    load_or_init,
    meta_params,
    replace_classifier,
)
from .base import CreateRequest, LoadReport
from .efficientnet import override_params

__all__ = ["EfficientNetFeatures", "create"]


def _features_class() -> type:
    from torch import nn

    class EfficientNetFeatures(nn.Module):
        """``features_only`` wrapper: the ``extract_endpoints`` maps at ``out_indices``.

        Index ``i`` is upstream's ``reduction_{i+1}`` (strides 2, 4, 8, 16, 32; index 5 is the
        1x1 head conv's output at stride 32).
        """

        def __init__(self, model: nn.Module, out_indices: tuple[int, ...]):
            super().__init__()
            bad = [i for i in out_indices if not 0 <= i <= 5]
            if bad:
                raise UnsupportedError(f"out_indices {bad} out of range 0..5 for EfficientNet")
            self.model = model
            # the classifier is not part of a feature extractor
            if hasattr(model, "_fc"):
                del model._fc
                del model._dropout
            self.out_indices = tuple(out_indices)
            self.feature_info = [
                {"reduction": 2 ** min(i + 1, 5), "index": i} for i in self.out_indices
            ]

        def forward(self, x: Any) -> list[Any]:
            model: Any = self.model
            endpoints = model.extract_endpoints(x)
            return [endpoints[f"reduction_{i + 1}"] for i in self.out_indices]

    return EfficientNetFeatures


def EfficientNetFeatures(model: Any, out_indices: tuple[int, ...]) -> Any:
    """Build the features_only wrapper (the class is defined lazily: it needs torch)."""
    return _features_class()(model, out_indices)


def create(card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """See :meth:`omnizoo.sources.base.SourceAdapter.create`."""
    from efficientnet_pytorch import EfficientNet

    params = override_params(request.kwargs)
    params.setdefault("image_size", int(card.extra.get("resolution", card.data.input_size[1])))
    path = request.weights_path
    if path is not None:
        with meta_params():
            model = EfficientNet.from_name(card.arch, num_classes=1000, **params)
    else:
        model = EfficientNet.from_name(card.arch, num_classes=1000, **params)
    # plain swish: identical outputs, and the model exports to ONNX / scripts
    model.set_swish(memory_efficient=False)

    sd: dict[str, Any] = {}
    adapted: list[str] = []
    if path is not None:
        sd = load_checkpoint(path, verified=not request.user_checkpoint)

    in_chans = request.in_chans
    if in_chans is not None and in_chans != 3:
        # upstream's own stem constructor (Conv2dStaticSamePadding), then the adapted
        # pretrained weight - upstream would leave the new stem randomly initialised
        model._change_in_channels(in_chans)
        if "_conv_stem.weight" in sd:
            sd["_conv_stem.weight"] = adapt_input_conv(in_chans, sd["_conv_stem.weight"])
            adapted.append("_conv_stem.weight")

    reinit: list[str] = []
    num_classes = request.num_classes
    fc = sd.get("_fc.weight")
    if num_classes is None and request.user_checkpoint and fc is not None:
        num_classes = int(fc.shape[0])  # a fine-tuned checkpoint: its head size wins
    if num_classes is not None and num_classes != 1000:
        new_keys = replace_classifier(model, ["_fc"], num_classes)
        model._global_params = model._global_params._replace(num_classes=num_classes)
        drop_unfitting(sd, model, ["_fc"])
        reinit = [k for k in new_keys if k not in sd]

    report = load_or_init(
        model,
        sd,
        path=path,
        name=card.name,
        verified=not request.user_checkpoint,
        reinitialize=reinit,
        adapted=adapted,
    )
    model.num_classes = num_classes if num_classes is not None else 1000
    if request.features_only:
        indices = request.out_indices if request.out_indices is not None else (0, 1, 2, 3, 4)
        model = EfficientNetFeatures(model, tuple(indices))
    elif request.out_indices is not None:
        raise UnsupportedError("out_indices= needs features_only=True")
    model.eval()
    return model, report
