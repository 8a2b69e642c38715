"""EfficientNet cards, from ``efficientnet_pytorch.utils`` (``VALID_MODELS``, ``url_map``,
``url_map_advprop``, ``efficientnet_params``).

Accuracies: the model table of the README the installed efficientnet_pytorch ships (its
wheel's long description: ``| `efficientnet-b0` | 5.3M | 76.3 | ✓ |``), top-1 only, on the
standard (``imagenet``) weights; the README gives none for the AdvProp weights. Parameter
counts and GFLOPs are counted on a meta-device build.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...values.card import ModelCard, WeightsFile
from ...values.data_config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    DataConfig,
)
from ...weights.hashing import parse_hash_prefix
from ..param_flops import COUNTED
from ..readme import distribution_readme, table_rows

__all__ = ["build_cards", "data_config", "meta_model", "override_params", "readme_top1"]

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


def readme_top1(readme: str) -> dict[str, float]:
    """arch -> top-1 from the README's model table (``*Top-1 Acc.*`` column)."""
    out: dict[str, float] = {}
    column = None
    for row in table_rows(readme):
        heads = [c.strip("*").strip() for c in row]
        if "Top-1 Acc." in heads:
            column = heads.index("Top-1 Acc.")
            continue
        if column is None or len(row) <= column:
            continue
        name = row[0].strip("`").strip()
        try:
            value = float(row[column])
        except ValueError:
            continue
        if re.fullmatch(r"efficientnet-[a-z0-9]+", name):
            out[name] = value
    return out


def meta_model(card: ModelCard) -> Any:
    """The card's architecture (``EfficientNet.from_name``, plain swish as omnizoo builds it;
    call it inside :func:`omnizoo.sources.param_flops.meta_build`)."""
    from efficientnet_pytorch import EfficientNet

    model = EfficientNet.from_name(card.arch, num_classes=card.num_classes)
    model.set_swish(memory_efficient=False)
    return model


def build_cards(source: str) -> list[ModelCard]:
    """One card per weights URL of every architecture (an architecture-only card for L2)."""
    utils, valid_models = _import_efficientnet()
    readme, version = distribution_readme("efficientnet_pytorch")
    top1 = readme_top1(readme)
    cited = f"efficientnet_pytorch {version} README (model table, Top-1 Acc.)"
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
            "provenance": (("num_params", COUNTED),) if num_params is not None else (),
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
            metrics: dict[str, Any] = {}
            if tag == "imagenet" and arch in top1:
                metrics = {
                    "top1": top1[arch],
                    "metrics_dataset": "ImageNet-1K",
                    "provenance": (*common["provenance"], ("top1", cited)),
                }
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
                    **{**common, **metrics},
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
