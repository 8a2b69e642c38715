"""``features_only`` for torchvision classification backbones, in timm's shape: ``forward``
returns a list of feature maps, ``feature_info`` is a :class:`~omnizoo.sources.features.FeatureInfo`
and ``out_indices`` has timm's meaning (an int n: the last n levels)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import UnsupportedError
from ...values.card import ModelCard
from ..features import FeatureInfo, OutIndices, take_indices

if TYPE_CHECKING:
    from torch import nn

__all__ = ["feature_extractor", "feature_levels"]


def feature_levels(model: nn.Module, card: ModelCard) -> list[dict[str, Any]]:
    """Every level of ``model``'s feature pyramid: the last module of each stride (2, 4, 8, 16,
    32), found by a probe forward pass at the card's input size, in execution order."""
    import torch
    from torch import nn

    was_training = model.training
    model.eval()
    size = card.data.input_size
    shapes: list[tuple[str, int, int]] = []
    hooks = []
    names = {m: n for n, m in model.named_modules() if n}

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        name = names.get(module)
        if name is None or not isinstance(out, torch.Tensor) or out.ndim != 4:
            return
        if name.count(".") > 1 or isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return
        shapes.append((name, int(out.shape[1]), int(out.shape[-2])))

    for m in names:
        hooks.append(m.register_forward_hook(hook))
    try:
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            model(torch.zeros(1, *size, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    by_reduction: dict[int, tuple[str, int]] = {}
    for name, channels, height in shapes:
        reduction = round(size[1] / height) if height > 0 else 0
        if reduction in (2, 4, 8, 16, 32):  # the last module of each stride wins
            by_reduction[reduction] = (name, channels)
    order = [n for n, _, _ in shapes]
    levels: list[dict[str, Any]] = []
    for r, (n, c) in sorted(by_reduction.items()):
        # keep levels whose module runs after the previous level's
        if not levels or order.index(n) > order.index(levels[-1]["module"]):
            levels.append({"module": n, "num_chs": c, "reduction": r})
    return levels


def feature_extractor(model: nn.Module, card: ModelCard, out_indices: OutIndices = None) -> Any:
    """Wrap a classification model so that ``forward`` returns the feature maps of
    ``out_indices`` (built with ``torchvision.models.feature_extraction``)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    levels = feature_levels(model, card)
    if len(levels) < 2:
        raise UnsupportedError(
            f"{card.name}: no feature pyramid found (non-hierarchical model); "
            "use the timm version of this architecture for features_only"
        )
    chosen = take_indices(len(levels), out_indices, name=card.name)
    try:
        body = create_feature_extractor(
            model, return_nodes={levels[i]["module"]: str(j) for j, i in enumerate(chosen)}
        )
    except Exception as exc:
        raise UnsupportedError(f"{card.name}: torch.fx cannot trace it ({exc})") from exc
    return _feature_list_cls()(body, FeatureInfo(levels, chosen))


def _feature_list_cls() -> Any:
    from torch import nn

    class FeatureListNet(nn.Module):
        """A torchvision feature extractor whose forward returns a list, like timm's."""

        def __init__(self, body: nn.Module, info: FeatureInfo):
            super().__init__()
            self.body = body
            self.feature_info = info

        def forward(self, x: Any) -> list[Any]:
            return list(self.body(x).values())

    return FeatureListNet
