"""timm cards: one per tag of timm's registry (``arch.tag``, with weights or ``untrained``),
and one bare card per architecture that has no tag at all.

Weights: like timm with huggingface_hub installed, a tag with an ``hf_hub_id`` loads from the
Hugging Face repo's file (``model.safetensors``; its sha256 comes from the Hub at download
time, see docs/cache.md); the url-only tags use their legacy URL and its sha256 file-name prefix
where it has one.

Metrics come from timm's published result tables (:mod:`.results`): accuracies, robustness
sets, parameter counts and GMACs; what they do not cover is counted on the meta device when
the index is built (:func:`omnizoo.sources.param_flops.fill_stats`, through :func:`meta_model`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ...values.card import ModelCard, WeightsFile, format_of_name
from ...weights.hashing import parse_hash_prefix

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "HF_ENDPOINT",
    "HF_FILENAME",
    "ORIGIN",
    "arch_cards",
    "build_cards",
    "card_from_cfg",
    "hf_url",
    "is_builtin",
    "meta_model",
    "session_archs",
]

ORIGIN = "https://github.com/huggingface/pytorch-image-models"
HF_ENDPOINT = "https://huggingface.co"  # the weights layer rewrites it to HF_ENDPOINT
HF_FILENAME = "model.safetensors"


def hf_url(hf_hub_id: str, filename: str = HF_FILENAME, revision: str = "main") -> str:
    """The resolve URL of a file in a Hugging Face model repo."""
    return f"{HF_ENDPOINT}/{hf_hub_id}/resolve/{revision}/{filename}"


def build_cards(source: str) -> list[ModelCard]:
    """Every architecture and every tag timm registers (``pretrained=True`` lists only those
    with weights; ``.untrained`` tags build random models, as in timm), with the metrics of
    timm's result tables. Models that code outside timm registered (``@timm.register_model``
    in a user's module) are left out: they exist only in the process that registers them
    (:func:`session_archs`)."""
    import timm
    from timm.models._registry import _model_to_module

    from .results import load_results

    results = load_results()
    module_of = {a: str(m).rsplit(".", 1)[-1] for a, m in _model_to_module.items()}
    unreliable = results.unreliable_modules(module_of) if results is not None else ()
    cards: list[ModelCard] = []
    for arch in timm.list_models():
        if not is_builtin(arch):
            continue
        for card in arch_cards(source, arch):
            if results is not None:
                fields = results.card_fields(
                    f"{arch}.{card.tag}" if card.tag else arch,
                    arch,
                    card.data.input_size,
                    head_is_default=card.num_classes == _default_classes(arch),
                    skip_gpu=module_of.get(arch, "") in unreliable,
                )
                card = dataclasses.replace(card, **fields)
            cards.append(card)
    return cards


def _default_classes(arch: str) -> int:
    return int(getattr(_registered_cfg(arch), "num_classes", 1000) or 0)


def _registered_cfg(name: str) -> Any:
    """timm's pretrained_cfg of ``name`` (``arch`` or ``arch.tag``; None when it has none),
    read where timm keeps it: ``get_pretrained_cfg`` returns a deep copy, which made up two
    thirds of building timm's cards, and the cards only read it."""
    from timm.models import _registry

    cfgs = getattr(_registry, "_model_pretrained_cfgs", None)
    if not isinstance(cfgs, dict):  # a timm that keeps them elsewhere: its public getter
        from timm.models import get_pretrained_cfg

        return get_pretrained_cfg(name)
    return cfgs.get(name)


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    """A pretrained_cfg's fields (its ``to_dict()`` without the deep copy; read only)."""
    if cfg is None:
        return {}
    if dataclasses.is_dataclass(cfg):
        return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return dict(cfg.to_dict())


def is_builtin(arch: str) -> bool:
    """Whether timm itself registers ``arch`` (its entry point lives in a ``timm.`` module)."""
    from timm.models._registry import _model_entrypoints

    module = getattr(_model_entrypoints.get(arch), "__module__", None) or "timm."
    return str(module).startswith("timm.")


def session_archs(entrypoints: dict[str, Any]) -> tuple[str, ...]:
    """The architectures in timm's registry that code outside timm registered."""
    return tuple(
        sorted(
            arch
            for arch, fn in entrypoints.items()
            if not str(getattr(fn, "__module__", None) or "timm.").startswith("timm.")
        )
    )


def arch_cards(source: str, arch: str) -> list[ModelCard]:
    """The cards of one architecture of timm's registry: one per tag, or a bare one."""
    from timm.models._registry import _model_to_module, _model_with_tags

    module = str(_model_to_module.get(arch, "")).rsplit(".", 1)[-1]
    tags = [n.partition(".")[2] for n in _model_with_tags.get(arch, []) if "." in n]
    default_cfg = _registered_cfg(arch)
    default_tag = getattr(default_cfg, "tag", None)
    if default_tag not in tags:
        default_tag = tags[0] if tags else None
    if not tags:
        return [card_from_cfg(source, arch, None, _cfg_dict(default_cfg), module, True)]
    cards: list[ModelCard] = []
    for tag in tags:
        cfg = _cfg_dict(_registered_cfg(f"{arch}.{tag}"))
        cards.append(card_from_cfg(source, arch, tag, cfg, module, tag == default_tag))
    return cards


def meta_model(card: ModelCard) -> nn.Module:
    """The card's architecture with the card's head, as ``timm.create_model("arch.tag")``
    builds it (call it on the meta device, inside
    :func:`omnizoo.sources.param_flops.meta_build`)."""
    import timm

    name = f"{card.arch}.{card.tag}" if card.tag else card.arch
    return timm.create_model(name, pretrained=False, num_classes=card.num_classes)


def weights_from_cfg(cfg: dict[str, Any], revision: str = "main") -> WeightsFile | None:
    """Where a pretrained_cfg's weights live (HF repo first, as timm does), or None."""
    url = cfg.get("url") or None
    hub = cfg.get("hf_hub_id") or None
    if hub:
        filename = cfg.get("hf_hub_filename") or HF_FILENAME
        return WeightsFile(
            urls=(hf_url(hub, filename, revision),),
            filename=filename,
            format=format_of_name(filename),
            hf_hub_id=hub,
        )
    if url:
        filename = url.rsplit("/", 1)[-1]
        return WeightsFile(
            urls=(url,),
            filename=filename,
            hash_prefix=parse_hash_prefix(filename),
            format=format_of_name(filename),
        )
    return None


def card_from_cfg(
    source: str,
    arch: str,
    tag: str | None,
    cfg: dict[str, Any],
    module: str,
    is_default: bool,
    *,
    weights: WeightsFile | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelCard:
    """A card from one timm pretrained_cfg dict."""
    from ...values.data_config import data_config_from_timm

    extra = {"module": module, **(extra or {})}
    notes: list[str] = []
    hub = cfg.get("hf_hub_id") or None
    if weights is None and tag is not None:
        weights = weights_from_cfg(cfg)
    if weights is not None and weights.hf_hub_id is None and weights.hash_prefix is None:
        notes.append("the file name carries no sha256 prefix: pin it with `omnizoo lock`")
    if hub and cfg.get("url"):
        extra["legacy_url"] = cfg["url"]
    for key in (
        "custom_load",
        "fixed_input_size",
        "pool_size",
        "test_crop_pct",
        "min_input_size",
        "test_input_size",
        "label_offset",
    ):
        value = cfg.get(key)
        if value not in (None, False):
            extra[key] = list(value) if isinstance(value, tuple) else value
    num_classes = int(cfg.get("num_classes") or 0)
    classifier = cfg.get("classifier") or ()
    if isinstance(classifier, str):
        classifier = (classifier,)
    paper = cfg.get("paper_name") or cfg.get("paper_ids")
    if cfg.get("paper_ids") and cfg.get("paper_name"):
        paper = f"{cfg['paper_name']} ({cfg['paper_ids']})"
    first_conv = cfg.get("first_conv")
    if isinstance(first_conv, (list, tuple)):
        first_conv = first_conv[0] if first_conv else None
    if cfg.get("notes"):
        notes.extend(str(n) for n in cfg["notes"])
    if tag is not None and weights is None:
        notes.append("no pretrained weights: this tag builds a randomly initialised model")
    return ModelCard(
        source=source,
        arch=arch,
        tag=tag,
        task="classification" if num_classes > 0 else "features",
        weights=weights,
        is_default=is_default,
        num_classes=num_classes,
        # timm's label_offset counts rows in the *file*; the model's outputs have none of them
        label_offset=0,
        data=data_config_from_timm(cfg),
        license=cfg.get("license"),
        paper=str(paper) if paper else None,
        origin=cfg.get("origin_url") or (f"{HF_ENDPOINT}/{hub}" if hub else ORIGIN),
        first_conv=first_conv,
        classifier=tuple(str(c) for c in classifier),
        notes=tuple(notes),
        extra=extra,
    )
