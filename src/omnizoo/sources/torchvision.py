"""torchvision: every builder of ``torchvision.models`` (classification, detection, keypoints,
segmentation, video, optical flow, quantized) and every member of its Weights enums.

Cards come from ``WeightsEnum.meta`` and ``weights.transforms()``; nothing is copied by hand.
Building calls the real builder with the real Weights enum (so every weights-dependent
architecture choice upstream makes - FrozenBatchNorm in detection, ``transform_input`` in
Inception, quantization - is kept) while two hooks replace the download: ``get_state_dict``
returns omnizoo's verified file, and the builder's ``load_state_dict`` call is done by
:func:`omnizoo.registry.loading.load_into` on a model whose parameters were created on the meta
device (so nothing is randomly initialised first).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..data.config import DataConfig
from ..errors import CheckpointError, UnsupportedError
from ..registry.card import ModelCard, WeightsFile
from ..registry.loading import (
    adapt_input_conv,
    drop_unfitting,
    load_checkpoint,
    load_into,
    materialize_,
    meta_params,
    replace_classifier,
    replace_first_conv,
)
from ..weights.hashing import parse_hash_prefix
from .base import CreateRequest, LoadReport, SourceAdapter

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TorchvisionSource"]

_T = TypeVar("_T")

ORIGIN = "https://github.com/pytorch/vision"
# torchvision module -> omnizoo task
_MODULES = (
    ("", "classification"),
    ("detection", "detection"),
    ("segmentation", "segmentation"),
    ("video", "video"),
    ("optical_flow", "optical_flow"),
    ("quantization", "quantized_classification"),
)


def _tvm() -> Any:
    import torchvision.models as tvm

    return tvm


class TorchvisionSource(SourceAdapter):
    """The torchvision adapter."""

    name = "torchvision"
    distribution = "torchvision"

    # ------------------------------------------------------------------ metadata
    def build_cards(self) -> list[ModelCard]:
        tvm = _tvm()
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        cards: list[ModelCard] = []
        for sub, task in _MODULES:
            module = getattr(tvm, sub) if sub else tvm
            for arch in tvm.list_models(module=module):
                arch_task = "keypoints" if arch.startswith("keypointrcnn") else task
                try:
                    enum = tvm.get_model_weights(arch)
                    members = list(enum)
                    default = enum.DEFAULT
                except (ValueError, AttributeError, KeyError):
                    members, default = [], None
                convs, heads = _stem_and_heads(arch, arch_task)
                if not members:
                    cards.append(
                        ModelCard(
                            source=self.name,
                            arch=arch,
                            task=arch_task,
                            is_default=True,
                            first_conv=convs,
                            classifier=heads,
                            origin=ORIGIN,
                            extra={"module": sub or "models"},
                        )
                    )
                for w in members:
                    cards.append(
                        self._card(
                            arch,
                            arch_task,
                            sub,
                            w,
                            w is default,
                            convs,
                            heads,
                            _IMAGENET_CATEGORIES,
                        )
                    )
        return cards

    def _card(
        self,
        arch: str,
        task: str,
        sub: str,
        w: Any,
        is_default: bool,
        first_conv: str | None,
        heads: tuple[str, ...],
        imagenet: list[str],
    ) -> ModelCard:
        meta = dict(w.meta)
        url = w.url
        filename = url.rsplit("/", 1)[-1]
        prefix = parse_hash_prefix(filename)
        categories = meta.get("categories")
        label_set = None
        inline: tuple[str, ...] | None = None
        if categories is not None:
            if list(categories) == list(imagenet):
                label_set = "imagenet-1k"
            else:
                inline = tuple(str(c) for c in categories)
        if categories is not None:
            num_classes = len(categories)
        elif task == "optical_flow":
            num_classes = 0
        else:
            num_classes = 1000
        top1 = top5 = None
        dataset = None
        extra_metrics: list[tuple[str, float]] = []
        metrics = meta.get("_metrics") or {}
        for ds, values in metrics.items():
            for key, value in values.items():
                if value is None or value != value:  # NaN: vgg16 IMAGENET1K_FEATURES
                    continue
                if key == "acc@1" and top1 is None:
                    top1, dataset = float(value), ds
                elif key == "acc@5" and top5 is None:
                    top5 = float(value)
                else:
                    label = key if len(metrics) == 1 else f"{ds}:{key}"
                    extra_metrics.append((label, float(value)))
        if dataset is None and metrics:
            dataset = next(iter(metrics))
        notes = []
        if categories is None and task != "optical_flow":
            notes.append("these weights declare no categories (feature-extraction weights)")
        if meta.get("unquantized"):
            notes.append(f"quantized from {meta['unquantized']}; backend {meta.get('backend')}")
        if prefix is None:
            notes.append("the file name carries no sha256 prefix: torch.hub verifies nothing")
        docs = " ".join(str(meta.get("_docs", "")).split())
        extra: dict[str, Any] = {
            "module": sub or "models",
            "weights_enum": type(w).__name__,
            "min_size": list(meta.get("min_size", ())),
            "file_size_mb": meta.get("_file_size"),
        }
        if docs:
            extra["docs"] = docs
        if meta.get("recipe"):
            extra["recipe"] = meta["recipe"]
        if meta.get("keypoint_names"):
            extra["keypoint_names"] = list(meta["keypoint_names"])
        if meta.get("min_temporal_size"):
            extra["min_temporal_size"] = meta["min_temporal_size"]
        return ModelCard(
            source=self.name,
            arch=arch,
            tag=w.name,
            task=task,
            weights=WeightsFile(
                urls=(url,),
                filename=filename,
                hash_prefix=prefix,
                format="pickle",
            ),
            is_default=is_default,
            num_classes=num_classes,
            label_set=label_set,
            categories=inline,
            data=_data_config(w, task, meta),
            top1=top1,
            top5=top5,
            metrics_dataset=dataset,
            extra_metrics=tuple(extra_metrics),
            num_params=meta.get("num_params"),
            gflops=meta.get("_ops"),
            license=meta.get("license") or "BSD-3-Clause (torchvision)",
            paper=None,
            origin=meta.get("recipe") or ORIGIN,
            first_conv=first_conv,
            classifier=heads,
            notes=tuple(notes),
            extra=extra,
        )

    # ------------------------------------------------------------------ building
    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        tvm = _tvm()
        builder = tvm.get_model_builder(card.arch)
        weights = tvm.get_model_weights(card.arch)[card.tag] if card.tag else None
        kwargs = dict(request.kwargs)
        quantized = card.task == "quantized_classification"
        if quantized and weights is not None and request.weights_path is not None:
            kwargs.setdefault("quantize", True)  # the quantized Weights enum needs it
        if request.features_only and card.task != "classification":
            raise UnsupportedError(
                f"{card.name}: features_only is supported for torchvision classification "
                f"backbones, not {card.task} models"
            )
        model, report = self._create(card, request, builder, weights, kwargs, quantized)
        if request.features_only:
            model = feature_extractor(model, card, request.out_indices)
        return model, report

    def _create(
        self,
        card: ModelCard,
        request: CreateRequest,
        builder: Any,
        weights: Any,
        kwargs: dict[str, Any],
        quantized: bool,
    ) -> tuple[Any, LoadReport]:
        if request.weights_path is None:
            if request.num_classes is not None:
                kwargs["num_classes"] = request.num_classes
            if "weights_backbone" in inspect.signature(builder).parameters:
                # detection/segmentation builders would otherwise download an ImageNet backbone
                kwargs.setdefault("weights_backbone", None)
            with _quiet():
                model = builder(weights=None, **kwargs)
            report = LoadReport(notes=["random init (no weights requested)"])
            if request.in_chans not in (None, 3):
                _require(card.first_conv, card, "in_chans")
                with meta_params():
                    replace_first_conv(model, str(card.first_conv), int(request.in_chans or 3))
                materialize_(model)
                _no_transform_input(model)
            return model.eval(), report

        state_dict = load_checkpoint(request.weights_path, verified=not request.user_checkpoint)
        num_classes = request.num_classes
        if num_classes is None and request.user_checkpoint and card.classifier:
            num_classes = _head_size(state_dict, card.classifier[-1])
        native = card.num_classes
        report = LoadReport(source_file=str(request.weights_path))
        want_head = num_classes is not None and num_classes != native
        want_stem = request.in_chans not in (None, 3)
        transplant = False  # a new class-count head for a detection/segmentation/video model
        if (want_head or want_stem) and card.task not in ("classification",):
            if want_stem or not native or card.task == "quantized_classification":
                raise UnsupportedError(
                    f"{card.name}: in_chans with pretrained weights is supported for torchvision "
                    f"classification models, not {card.task}; build with pretrained=False and "
                    "load your own weights"
                    if want_stem
                    else f"{card.name}: a {card.task} model has no class head to resize "
                    f"(num_classes={num_classes})"
                )
            if request.user_checkpoint:
                # The user's file was trained with num_classes outputs: build that model.
                return self._user_checkpoint_with_classes(
                    card, builder, kwargs, state_dict, int(num_classes or 0), report
                )
            transplant, want_head = True, False
        if want_head:
            _require(card.classifier, card, "num_classes")
        if want_stem:
            _require(card.first_conv, card, "in_chans")

        def load(model: nn.Module, sd: dict[str, Any]) -> None:
            reinit: list[str] = []
            adapted: list[str] = []
            if want_stem:
                key = f"{card.first_conv}.weight"
                with meta_params():
                    replace_first_conv(model, str(card.first_conv), int(request.in_chans or 3))
                sd[key] = adapt_input_conv(int(request.in_chans or 3), sd[key])
                adapted.append(key)
            if want_head:
                present = [h for h in card.classifier if _has_module(model, h)]
                new_keys = replace_classifier(model, present, int(num_classes or 0))
                # A user's checkpoint may carry a head of exactly the new size: load it.
                # Only head tensors that do not fit are dropped and re-initialised.
                drop_unfitting(sd, model, present)
                reinit = [k for k in new_keys if k not in sd]
            if quantized:  # packed quantized params cannot be assigned: a plain copy load
                plain: dict[str, Any] = OrderedDict(sd)
                if getattr(sd, "_metadata", None) is not None:
                    plain._metadata = sd._metadata  # type: ignore[attr-defined]
                result = model.load_state_dict(plain, strict=False)
                report.missing.extend(result.missing_keys)
                report.unexpected.extend(result.unexpected_keys)
                report.loaded.extend(k for k in sd if k not in set(result.unexpected_keys))
            else:
                load_into(model, sd, report=report, reinitialize=reinit, adapted=adapted)

        def build(meta: bool) -> tuple[Any, list[bool]]:
            ctx = meta_params() if meta else contextlib.nullcontext()
            if weights is None:
                with ctx, _quiet():
                    built = builder(weights=None, **kwargs)
                load(built, state_dict)
                return built, [True]
            with _intercept(weights, state_dict, load) as seen, ctx, _quiet():
                built = builder(weights=weights, **kwargs)
            return built, seen

        model, seen = _meta_or_real(build, meta=not quantized)
        if not seen:
            raise CheckpointError(f"torchvision's {card.arch} builder did not load weights")
        if want_stem:
            _no_transform_input(model)
        if transplant:
            model = _transplant_heads(model, card, builder, kwargs, int(num_classes or 0), report)
        return model.eval(), report

    def _user_checkpoint_with_classes(
        self,
        card: ModelCard,
        builder: Any,
        kwargs: dict[str, Any],
        state_dict: dict[str, Any],
        num_classes: int,
        report: LoadReport,
    ) -> tuple[Any, LoadReport]:
        """A detection/segmentation/video checkpoint of the user's, for a ``num_classes``
        model: a file trained with that many classes loads whole; a head of another size (e.g.
        the COCO-pretrained file itself) is left at torchvision's fresh initialisation and
        reported as re-initialised, like a classification head."""
        kwargs = _template_kwargs(builder, kwargs, num_classes)
        if "aux_loss" in inspect.signature(builder).parameters:
            kwargs.setdefault("aux_loss", any(k.startswith("aux_classifier.") for k in state_dict))

        def make(meta: bool) -> Any:
            with meta_params() if meta else contextlib.nullcontext(), _quiet():
                return builder(weights=None, **kwargs)

        model = _meta_or_real(make)
        own = model.state_dict()
        misfit = [k for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
        if misfit:
            # Real init this time, so that the new head gets torchvision's own initialisation
            # (e.g. RetinaNet's prior-probability bias), which a meta build would not record.
            model = make(meta=False)
            dropped = set(misfit)
            state_dict = {k: v for k, v in state_dict.items() if k not in dropped}
            report.notes.append(f"new {num_classes}-class head: {len(misfit)} tensors")
        load_into(model, state_dict, report=report, reinitialize=misfit)
        return model.eval(), report

    def default_cfg_for_model(self, model: nn.Module) -> ModelCard | None:
        return None


# ---------------------------------------------------------------------------- features_only
def feature_extractor(model: nn.Module, card: ModelCard, out_indices: Any = None) -> nn.Module:
    """Wrap a classification model so that forward returns a list of feature maps, like timm's
    ``features_only``: one per spatial reduction (the last module of each stride, found by a
    probe forward pass), built with ``torchvision.models.feature_extraction``."""
    import torch
    from torch import nn
    from torchvision.models.feature_extraction import create_feature_extractor

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
    by_reduction: dict[int, tuple[str, int]] = {}
    for name, channels, height in shapes:
        reduction = round(size[1] / height) if height > 0 else 0
        if reduction in (2, 4, 8, 16, 32):  # the last module of each stride wins
            by_reduction[reduction] = (name, channels)
    stages = sorted((r, n, c) for r, (n, c) in by_reduction.items() if r >= 2)
    # keep stages whose module comes after the previous one's (execution order)
    order = [n for n, _, _ in shapes]
    picked: list[tuple[int, str, int]] = []
    for r, n, c in stages:
        if not picked or order.index(n) > order.index(picked[-1][1]):
            picked.append((r, n, c))
    if len(picked) < 2:
        raise UnsupportedError(
            f"{card.name}: no feature pyramid found (non-hierarchical model); "
            "use the timm version of this architecture for features_only"
        )
    indices = tuple(range(len(picked))) if out_indices is None else tuple(out_indices)
    try:
        chosen = [picked[i] for i in indices]
    except IndexError:
        raise UnsupportedError(
            f"{card.name}: out_indices {indices} out of range; it has {len(picked)} stages"
        ) from None
    try:
        body = create_feature_extractor(
            model, return_nodes={n: str(i) for i, (_, n, _) in enumerate(chosen)}
        )
    except Exception as exc:
        raise UnsupportedError(f"{card.name}: torch.fx cannot trace it ({exc})") from exc
    return _FeatureList(body, [{"module": n, "num_chs": c, "reduction": r} for r, n, c in chosen])


def _feature_list_cls() -> Any:
    from torch import nn

    class FeatureList(nn.Module):
        """A torchvision feature extractor whose forward returns a list, like timm's."""

        def __init__(self, body: nn.Module, info: list[dict[str, Any]]):
            super().__init__()
            self.body = body
            self.feature_info = info

        def forward(self, x: Any) -> list[Any]:
            return list(self.body(x).values())

    return FeatureList


def _FeatureList(body: Any, info: list[dict[str, Any]]) -> Any:
    return _feature_list_cls()(body, info)


# ---------------------------------------------------------------------------- helpers
def _data_config(w: Any, task: str, meta: dict[str, Any]) -> DataConfig:
    t = w.transforms()
    crop = getattr(t, "crop_size", None)
    resize = getattr(t, "resize_size", None)
    mean = getattr(t, "mean", None)
    std = getattr(t, "std", None)
    interp = getattr(t, "interpolation", None)
    interpolation = getattr(interp, "value", "bilinear") if interp is not None else "bilinear"
    if task in ("detection", "keypoints", "optical_flow"):
        h, w_ = (*tuple(meta.get("min_size") or (224, 224)), 224, 224)[:2]
        size = (3, max(int(h), 32), max(int(w_), 32))
        # The model resizes and normalises inside; it wants 0-1 RGB of any size.
        return DataConfig(
            input_size=size,
            mean=(0.0,),
            std=(1.0,),
            crop_mode="none",
            crop_pct=1.0,
            interpolation="bilinear",
        )
    if crop is None:  # segmentation: resize the shorter side, no crop
        side = int(resize[0]) if resize else 520
        crop = [side]
    if len(crop) == 1:
        crop = [crop[0], crop[0]]
    kwargs: dict[str, Any] = {
        "input_size": (3, int(crop[0]), int(crop[1])),
        "interpolation": interpolation,
        "antialias": bool(getattr(t, "antialias", True)),
    }
    if resize is not None:
        kwargs["resize_size"] = int(resize[0]) if len(resize) == 1 else int(min(resize))
        kwargs["crop_pct"] = min(1.0, min(int(crop[0]), int(crop[1])) / kwargs["resize_size"])
    if mean is not None:
        kwargs["mean"] = tuple(float(v) for v in mean)
    if std is not None:
        kwargs["std"] = tuple(float(v) for v in std)
    return DataConfig(**kwargs)


def _stem_and_heads(arch: str, task: str) -> tuple[str | None, tuple[str, ...]]:
    """The first 3-channel Conv2d and the 1000-way Linear/Conv2d heads, found on a meta build."""
    if task != "classification":
        return None, ()
    from torch import nn

    tvm = _tvm()
    try:
        with meta_params(), _quiet():
            model = tvm.get_model(arch)
    except Exception:  # pragma: no cover - a builder that cannot run on meta
        return None, ()
    conv = next(
        (n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3),
        None,
    )
    heads = tuple(
        n
        for n, m in model.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == 1000)
        or (isinstance(m, nn.Conv2d) and m.out_channels == 1000)
    )
    return conv, heads


def _meta_or_real(build: Callable[[bool], _T], *, meta: bool = True) -> _T:
    """``build(True)`` (on the meta device), or ``build(False)`` when the builder needs real
    tensors: some run a forward pass while building (SSDlite measures its backbone's output
    channels), which meta tensors cannot do."""
    if not meta:
        return build(False)
    try:
        return build(True)
    except RuntimeError as exc:
        if "meta" not in str(exc):
            raise
        return build(False)


def _template_kwargs(builder: Any, kwargs: dict[str, Any], num_classes: int) -> dict[str, Any]:
    out = dict(kwargs, num_classes=num_classes)
    if "weights_backbone" in inspect.signature(builder).parameters:
        out.setdefault("weights_backbone", None)  # never download a backbone for a template
    return out


def _plain_attrs(module: nn.Module) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple))
    }


def _transplant_heads(
    model: nn.Module,
    card: ModelCard,
    builder: Any,
    kwargs: dict[str, Any],
    num_classes: int,
    report: LoadReport,
) -> nn.Module:
    """Give a pretrained detection/segmentation/video model a ``num_classes`` head.

    torchvision refuses ``num_classes`` together with ``weights`` for these tasks; its
    fine-tuning tutorials build the pretrained model and swap the predictor by hand. This does
    the swap for every such builder: a template of the same builder with ``num_classes`` is
    built (random init, torchvision's own head initialisation), the tensors whose shapes
    differ name the class-dependent modules, and those modules (raised to the enclosing module
    that stores the class count, e.g. RetinaNet's classification head) move into the
    pretrained model. Inside them, every tensor whose shape did not change is copied from the
    pretrained model; everything else keeps its pretrained weights too.
    """
    import torch

    template_kwargs = _template_kwargs(builder, kwargs, num_classes)
    if "aux_loss" in inspect.signature(builder).parameters:
        template_kwargs.setdefault("aux_loss", getattr(model, "aux_classifier", None) is not None)
    with _quiet():
        template = builder(weights=None, **template_kwargs)
    ours, theirs = model.state_dict(), template.state_dict()
    changed = [k for k in theirs if k in ours and tuple(ours[k].shape) != tuple(theirs[k].shape)]
    only_one = sorted((set(ours) ^ set(theirs)) - {k for k in ours if "num_batches_tracked" in k})
    only_one = [k for k in only_one if not k.endswith("num_batches_tracked")]
    if not changed or only_one:
        raise UnsupportedError(
            f"{card.name}: cannot find the class head for num_classes={num_classes} "
            f"(tensors that differ in shape: {changed[:4]}; in only one model: {only_one[:4]})"
        )
    own_modules = dict(model.named_modules())
    new_modules = dict(template.named_modules())
    roots: list[str] = []
    for key in changed:
        path = owner = key.rpartition(".")[0]
        # The highest enclosing module that records a size that changed (e.g. SSD's
        # classification head keeps num_columns two levels above the convolutions).
        parts = owner.split(".")
        for depth in range(1, len(parts)):
            above = ".".join(parts[:depth])
            if (
                above in own_modules
                and above in new_modules
                and _plain_attrs(own_modules[above]) != _plain_attrs(new_modules[above])
            ):
                path = above
                break
        if not path:
            raise UnsupportedError(
                f"{card.name}: num_classes changes the whole model; build it with "
                "pretrained=False and num_classes, then load the weights that fit"
            )
        if not any(path == r or path.startswith(r + ".") for r in roots):
            roots = [r for r in roots if not r.startswith(path + ".")] + [path]
    # Sizes the model object itself records (swin3d keeps num_classes on the model).
    for attr, value in _plain_attrs(template).items():
        if _plain_attrs(model).get(attr, value) != value:
            setattr(model, attr, value)
    param = next(iter(model.parameters()), None)
    fresh: list[str] = []
    with torch.no_grad():
        for path in roots:
            head = new_modules[path]
            if param is not None:
                head = head.to(device=param.device, dtype=param.dtype)
            # Inside the moved module, what does not depend on the class count keeps its
            # pretrained values (RetinaNet's conv tower, SSDlite's depthwise blocks): the same
            # result as torchvision's recipe of replacing only the last layer by hand.
            old = own_modules[path].state_dict()
            for key, value in head.state_dict().items():
                kept = old.get(key)
                if kept is not None and tuple(kept.shape) == tuple(value.shape):
                    value.copy_(kept)
                else:
                    fresh.append(f"{path}.{key}")
            parent, _, leaf = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, head)
    fresh_set = set(fresh)
    report.loaded[:] = [k for k in report.loaded if k not in fresh_set]
    report.reinitialized.extend(fresh)
    report.notes.append(
        f"new {num_classes}-class head: {', '.join(roots)} (torchvision's own initialisation)"
    )
    return model


def _require(value: Any, card: ModelCard, what: str) -> None:
    if not value:
        raise UnsupportedError(f"{card.name}: {what} cannot be adapted (no stem/head recorded)")


def _has_module(model: nn.Module, path: str) -> bool:
    try:
        return model.get_submodule(path) is not None
    except AttributeError:
        return False


def _head_size(sd: dict[str, Any], head: str) -> int | None:
    w = sd.get(f"{head}.weight")
    return int(w.shape[0]) if w is not None else None


def _no_transform_input(model: nn.Module) -> None:
    # Inception/GoogLeNet re-normalise 3 RGB channels when transform_input is set.
    if getattr(model, "transform_input", False):
        setattr(model, "transform_input", False)  # noqa: B010


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*default weight initialization.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        yield


class _Intercepted(dict[str, Any]):
    """The state dict handed to a torchvision builder; recognised by the load hook."""


_hook_lock = threading.RLock()


@contextlib.contextmanager
def _intercept(weights: Any, state_dict: dict[str, Any], load: Any) -> Iterator[list[bool]]:
    """Make ``weights.get_state_dict`` return ``state_dict`` and route the builder's
    ``model.load_state_dict(that dict)`` to ``load(model, dict)``."""
    from torch import nn

    seen: list[bool] = []
    marker = _Intercepted(state_dict)
    if getattr(state_dict, "_metadata", None) is not None:
        marker._metadata = state_dict._metadata  # type: ignore[attr-defined]
    cls = type(weights)
    with _hook_lock:
        had_own = "get_state_dict" in cls.__dict__
        original_get = cls.get_state_dict
        original_load = nn.Module.load_state_dict

        def get_state_dict(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self is weights:
                return marker
            return original_get(self, *args, **kwargs)

        def load_state_dict(self: Any, sd: Any, *args: Any, **kwargs: Any) -> Any:
            if sd is marker:
                seen.append(True)
                load(self, marker)
                return nn.modules.module._IncompatibleKeys([], [])
            return original_load(self, sd, *args, **kwargs)

        cls.get_state_dict = get_state_dict
        nn.Module.load_state_dict = load_state_dict  # type: ignore[method-assign,assignment]
        try:
            yield seen
        finally:
            if had_own:
                cls.get_state_dict = original_get
            else:
                delattr(cls, "get_state_dict")
            nn.Module.load_state_dict = original_load  # type: ignore[method-assign]
