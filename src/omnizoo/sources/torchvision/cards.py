"""torchvision cards, from ``WeightsEnum.meta`` and ``weights.transforms()``; nothing is copied
by hand."""

from __future__ import annotations

from typing import Any

from ...loading.heads import find_layers_of_width
from ...loading.meta import meta_params
from ...values.card import ModelCard, Task, WeightsFile
from ...values.data_config import DataConfig
from ...weights.hashing import parse_hash_prefix
from .upstream import quiet, tvm

__all__ = ["ORIGIN", "build_cards"]

ORIGIN = "https://github.com/pytorch/vision"
# torchvision module -> omnizoo task
_MODULES: tuple[tuple[str, Task], ...] = (
    ("", "classification"),
    ("detection", "detection"),
    ("segmentation", "segmentation"),
    ("video", "video"),
    ("optical_flow", "optical_flow"),
    ("quantization", "quantized_classification"),
)


def build_cards(source: str) -> list[ModelCard]:
    """One card per Weights enum member, and one bare card per builder without weights."""
    import torchvision

    version = str(torchvision.__version__).split("+")[0]
    models = tvm()
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    cards: list[ModelCard] = []
    for sub, task in _MODULES:
        module = getattr(models, sub) if sub else models
        for arch in models.list_models(module=module):
            arch_task: Task = "keypoints" if arch.startswith("keypointrcnn") else task
            try:
                enum = models.get_model_weights(arch)
                members = list(enum)
                default = enum.DEFAULT
            except (ValueError, AttributeError, KeyError):
                members, default = [], None
            convs, heads = _stem_and_heads(arch, arch_task)
            if not members:
                cards.append(
                    ModelCard(
                        source=source,
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
                    _card(
                        source,
                        arch,
                        arch_task,
                        sub,
                        w,
                        w is default,
                        convs,
                        heads,
                        _IMAGENET_CATEGORIES,
                        version,
                    )
                )
    return cards


def _card(
    source: str,
    arch: str,
    task: Task,
    sub: str,
    w: Any,
    is_default: bool,
    first_conv: str | None,
    heads: tuple[str, ...],
    imagenet: list[str],
    version: str,
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
    where = f"torchvision {version} {type(w).__name__}.{w.name}.meta"
    provenance = []
    if top1 is not None:
        provenance += [("top1", f"{where} _metrics"), ("top5", f"{where} _metrics")]
    if extra_metrics:
        provenance.append(("extra_metrics", f"{where} _metrics"))
    if meta.get("num_params") is not None:
        provenance.append(("num_params", f"{where} num_params"))
    if meta.get("_ops") is not None:
        provenance.append(("gflops", f"{where} _ops"))
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
        source=source,
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
        provenance=tuple(provenance),
        license=meta.get("license") or "BSD-3-Clause (torchvision)",
        paper=None,
        origin=meta.get("recipe") or ORIGIN,
        first_conv=first_conv,
        classifier=heads,
        notes=tuple(notes),
        extra=extra,
    )


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

    models = tvm()
    try:
        with meta_params(), quiet():
            model = models.get_model(arch)
    except Exception:  # pragma: no cover - a builder that cannot run on meta
        return None, ()
    conv = next(
        (n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3),
        None,
    )
    return conv, find_layers_of_width(model, 1000)
