"""EfficientNet cards, from ``efficientnet_pytorch.utils`` (``VALID_MODELS``, ``url_map``,
``url_map_advprop``, ``efficientnet_params``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...data.config import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, DataConfig
from ...registry.card import ModelCard, WeightsFile
from ...weights.hashing import parse_hash_prefix

__all__ = ["build_cards", "data_config", "override_params"]

ORIGIN = "https://github.com/lukemelas/EfficientNet-PyTorch"
PAPER = "https://arxiv.org/abs/1905.11946"
PAPER_ADVPROP = "https://arxiv.org/abs/1911.09665"


def _import_efficientnet() -> Any:
    from ...errors import DependencyError, pip_install

    try:
        import efficientnet_pytorch.model as model_module
        import efficientnet_pytorch.utils as utils
    except ImportError as exc:
        raise DependencyError(
            f"the efficientnet source needs efficientnet_pytorch: {pip_install('efficientnet')} "
            f"({exc})"
        ) from exc
    return utils, model_module.VALID_MODELS


def data_config(resolution: int, advprop: bool) -> DataConfig:
    """EfficientNet-PyTorch's eval recipe at ``resolution``."""
    return DataConfig(
        input_size=(3, resolution, resolution),
        interpolation="bicubic",
        resize_size=resolution,
        crop_pct=1.0,
        crop_mode="center",
        mean=INCEPTION_MEAN if advprop else IMAGENET_MEAN,
        std=INCEPTION_STD if advprop else IMAGENET_STD,
    )


def _num_params(arch: str) -> int | None:
    try:
        import torch
        from efficientnet_pytorch import EfficientNet

        with torch.device("meta"):
            model = EfficientNet.from_name(arch)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # pragma: no cover - informational only
        return None


def build_cards(source: str) -> list[ModelCard]:
    """One card per weights URL of every architecture (an architecture-only card for L2)."""
    utils, valid_models = _import_efficientnet()
    cards: list[ModelCard] = []
    for arch in valid_models:
        resolution = int(utils.efficientnet_params(arch)[2])
        num_params = _num_params(arch)
        weights: list[tuple[str, str, bool]] = []
        if arch in utils.url_map:
            weights.append(("imagenet", utils.url_map[arch], False))
        if arch in utils.url_map_advprop:
            weights.append(("advprop", utils.url_map_advprop[arch], True))
        common: dict[str, Any] = {
            "source": source,
            "arch": arch,
            "num_classes": 1000,
            "label_set": "imagenet-1k",
            "num_params": num_params,
            "license": "apache-2.0",
            "origin": ORIGIN,
            "first_conv": "_conv_stem",
            "classifier": ("_fc",),
        }
        if not weights:
            cards.append(
                ModelCard(
                    tag=None,
                    is_default=True,  # the architecture's only card (as torchvision's)
                    data=data_config(resolution, advprop=False),
                    paper=PAPER,
                    notes=("efficientnet_pytorch publishes no weights for this architecture",),
                    extra={"resolution": resolution},
                    **common,
                )
            )
            continue
        for i, (tag, url, advprop) in enumerate(weights):
            filename = url.rsplit("/", 1)[-1]
            prefix = parse_hash_prefix(filename)
            notes = [
                "efficientnet_pytorch never checks the sha256 prefix in the file name;"
                " omnizoo does",
                "plain swish (set_swish(memory_efficient=False)) so the model exports/scripts",
            ]
            if advprop:
                notes.append("AdvProp weights expect x*2-1 input (mean = std = 0.5)")
            if arch not in utils.url_map:
                notes.append("no standard (AutoAugment) weights for this variant; AdvProp only")
            cards.append(
                ModelCard(
                    tag=tag,
                    weights=WeightsFile(
                        urls=(url,),
                        filename=filename,
                        hash_prefix=prefix,
                        format="pickle",
                    ),
                    is_default=i == 0,
                    data=data_config(resolution, advprop=advprop),
                    paper=PAPER_ADVPROP if advprop else PAPER,
                    notes=tuple(notes),
                    extra={"resolution": resolution, "advprop": advprop},
                    **common,
                )
            )
    return cards


def override_params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``from_name`` overrides a user may pass through ``create_model(**kwargs)``."""
    allowed = {
        "dropout_rate",
        "drop_connect_rate",
        "batch_norm_momentum",
        "batch_norm_epsilon",
        "image_size",
    }
    unknown = set(kwargs) - allowed
    if unknown:
        from ...errors import ConfigurationError

        raise ConfigurationError(
            f"efficientnet models take no argument(s) {sorted(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    return dict(kwargs)
