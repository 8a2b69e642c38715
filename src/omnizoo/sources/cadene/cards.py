"""Cadene cards, one per ``pretrainedmodels.pretrained_settings`` entry.

Accuracies: the "Accuracy on validation set" table of the README that the installed
pretrainedmodels ships (its wheel's long description). A row counts when its model cell links
to the ported model (the plain-text rows are the original frameworks' figures, except those
of torchvision's own weights, version "Pytorch", which pretrainedmodels loads as they are:
ResNet152); "Our porting" wins over another row of the same model. ``_5k`` rows are the
``imagenet+5k`` weights. A figure is put on every card whose weights are that file
(``imagenet+background`` shares the ``imagenet`` file of inceptionv4, ...). Parameter counts
come from a meta-device build; GFLOPs are counted when the index is built (:func:`meta_model`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

from ...values.card import ModelCard, WeightsFile
from ...values.data_config import DataConfig
from ...weights.hashing import parse_hash_prefix
from ..param_flops import COUNTED
from ..readme import distribution_readme, link_text, table_rows
from .upstream import (
    SQUEEZENETS,
    build_upstream,
    fix_quirks,
    import_pretrainedmodels,
    tag_for_settings_key,
)

__all__ = ["build_cards", "meta_model", "readme_accuracies"]

README_SECTION = "Accuracy on validation set"


ORIGIN = "https://github.com/Cadene/pretrained-models.pytorch"


# torch.hub's HASH_REGEX: the first "-<hex>." in the file name is a sha256 prefix.
# Same file names (hence same verified bytes) re-hosted by timm (timm/models/senet.py and
# xception.py, `legacy_*` tags); tried after the original URL.
_TIMM_CADENE_RELEASE = (
    "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/"
)


_REHOSTED = {
    "se_resnet50-ce0d4300.pth",
    "se_resnet101-7e38fcc6.pth",
    "se_resnet152-d17c99b7.pth",
    "xception-43020ad28.pth",
}


def _data_config(entry: Mapping[str, Any]) -> DataConfig:
    """``pretrainedmodels.utils.TransformImage(entry)`` (eval: scale 0.875, centre crop)."""
    size = tuple(int(v) for v in entry["input_size"])
    scale = 0.875  # TransformImage's default
    bgr = entry["input_space"] == "BGR"
    to255 = max(entry["input_range"]) == 255
    return DataConfig(
        input_size=(size[0], size[1], size[2]),
        # transforms.Resize's default (PIL bilinear; antialias on tensors)
        interpolation="bilinear",
        # TransformImage: Resize(floor(max(input_size) / scale)) keeps the aspect ratio
        resize_size=math.floor(max(size) / scale),
        crop_pct=scale,
        crop_mode="center",
        # ToSpaceBGR then ToRange255 then Normalize(mean, std): the values are already given
        # in the BGR order and the 0-255 range where those apply
        mean=tuple(float(v) for v in entry["mean"]),
        std=tuple(float(v) for v in entry["std"]),
        color_order="BGR" if bgr else "RGB",
        value_range=(0.0, 255.0) if to255 else (0.0, 1.0),
    )


def _meta_stats(pm: Any, arch: str, num_classes: int) -> tuple[int | None, str | None, str | None]:
    """(num_params, first conv, classifier) from a meta-device build (no memory, no init cost)."""
    try:
        import torch

        with torch.device("meta"):
            model = build_upstream(pm, arch, num_classes)
    except Exception:  # pragma: no cover - informational only
        return None, None, None
    first_conv = None
    for key, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            first_conv = key
            break
    head = "last_linear" if hasattr(model, "last_linear") else "last_conv"
    return sum(p.numel() for p in model.parameters()), first_conv, head


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower()).replace("dualpathnet", "dpn")


def readme_accuracies(
    readme: str, archs: list[str]
) -> tuple[dict[tuple[str, str], tuple[float, float, str]], list[str]]:
    """(``{(arch, settings key): (top1, top5, row label)}``, linked rows naming no arch) from
    the README's accuracy table."""
    start = readme.find(README_SECTION)
    if start < 0:
        return {}, []
    section = readme[start:]
    end = section.find("\n#", 1)
    rows = table_rows(section if end < 0 else section[:end])
    by_name = {_squash(a): a for a in archs}
    found: dict[tuple[str, str], tuple[float, float, str]] = {}
    unmatched: list[str] = []
    for row in rows[1:]:
        if len(row) < 4:
            continue
        label = link_text(row[0])
        version = link_text(row[1]) or row[1]
        if label is None and version != "Pytorch":
            continue  # an original framework's figure, not the weights pretrainedmodels loads
        label = label or row[0]
        try:
            top1, top5 = float(row[2]), float(row[3])
        except ValueError:
            continue
        base, five_k = re.subn(r"_5k$", "", label)
        arch = by_name.get(_squash(base))
        if arch is None:
            unmatched.append(label)
            continue
        key = (arch, "imagenet+5k" if five_k else "imagenet")
        if key in found and (version != "Our porting" or link_text(row[0]) is None):
            continue
        found[key] = (top1, top5, f"{label}, {version}")
    return found, unmatched


def build_cards(source: str) -> list[ModelCard]:
    """One card per settings entry of every architecture."""
    pm = import_pretrainedmodels()
    settings = pm.pretrained_settings
    readme, version = distribution_readme("pretrainedmodels")
    accuracies, _ = readme_accuracies(readme, list(pm.model_names))
    by_url = {
        str(settings[arch][key]["url"]): value
        for (arch, key), value in accuracies.items()
        if key in settings.get(arch, {})
    }
    cards: list[ModelCard] = []
    for arch in pm.model_names:
        entries: Mapping[str, Mapping[str, Any]] = settings[arch]
        default_key = _default_key(pm, arch, entries)
        # a file's head size: the largest num_classes any entry gives that URL
        file_rows: dict[str, int] = {}
        for e in entries.values():
            file_rows[e["url"]] = max(file_rows.get(e["url"], 0), int(e["num_classes"]))
        stats: dict[int, tuple[int | None, str | None, str | None]] = {}
        for key, entry in entries.items():
            nc = int(entry["num_classes"])
            if nc not in stats:
                stats[nc] = _meta_stats(pm, arch, nc)
            num_params, first_conv, head = stats[nc]
            card = _card(
                source,
                arch,
                key,
                entry,
                key == default_key,
                file_rows[entry["url"]],
                num_params,
                first_conv,
                head,
            )
            provenance = [("num_params", COUNTED)] if num_params is not None else []
            acc = by_url.get(str(entry["url"]))
            if acc is not None:
                where = f"pretrainedmodels {version} README, {README_SECTION} ({acc[2]})"
                provenance += [("top1", where), ("top5", where)]
                card = dataclasses.replace(
                    card, top1=acc[0], top5=acc[1], metrics_dataset="ImageNet-1K"
                )
            cards.append(dataclasses.replace(card, provenance=tuple(provenance)))
    return cards


def meta_model(card: ModelCard) -> Any:
    """The card's architecture with its head, as omnizoo builds it (upstream's builder and
    omnizoo's fixes of its quirks; call it inside
    :func:`omnizoo.sources.param_flops.meta_build`)."""
    model = build_upstream(import_pretrainedmodels(), card.arch, card.num_classes)
    fix_quirks(card.arch, model)
    return model


def _default_key(pm: Any, arch: str, entries: Mapping[str, Any]) -> str:
    """The builder's own default (``pretrained='imagenet+5k'`` for dpn68b, ...)."""
    try:
        default = inspect.signature(pm.__dict__[arch]).parameters["pretrained"].default
    except (KeyError, TypeError, ValueError):  # pragma: no cover - defensive
        default = None
    if default in entries:
        return str(default)
    return "imagenet" if "imagenet" in entries else next(iter(entries))


def _card(
    source: str,
    arch: str,
    key: str,
    entry: Mapping[str, Any],
    is_default: bool,
    rows_in_file: int,
    num_params: int | None,
    first_conv: str | None,
    head: str | None,
) -> ModelCard:
    url = str(entry["url"])
    filename = url.rsplit("/", 1)[-1]
    urls = [url]
    if filename in _REHOSTED:
        urls.append(_TIMM_CADENE_RELEASE + filename)
    nc = int(entry["num_classes"])
    background = nc == 1001
    notes = [
        "pretrainedmodels never checks the sha256 prefix in the file name; omnizoo does",
    ]
    if url.startswith("http://data.lip6.fr/"):
        notes.append(
            "hosted on plain-http data.lip6.fr (repeated outages, Cadene issues #95/#152/#161);"
            " the file-name sha256 prefix is what makes any copy trustworthy"
            + ("; a timm GitHub re-host is the fallback URL" if len(urls) > 1 else "")
        )
    if background:
        notes.append("1001-way head: index 0 is a background class (label_offset=1)")
    elif rows_in_file == nc + 1:
        notes.append(
            "the file has a 1001-way head (background first); rows [1:] are kept, as upstream"
            " does for pretrained='imagenet'"
        )
    if key == "imagenet+5k":
        notes.append("pretrained on ImageNet-5k, fine-tuned on ImageNet-1k (1000 classes)")
    if entry["input_space"] == "BGR":
        notes.append("Caffe-style input: BGR channel order, 0-255 range, mean subtraction")
    if arch in SQUEEZENETS:
        notes.append("output flattened to [N, 1000] (upstream returns [N, 1000, 1, 1])")
    if arch == "inceptionv3":
        notes.append(
            "returns logits in train mode too (aux head loaded but off; model.aux_logits=True"
            " restores (logits, aux))"
        )
    return ModelCard(
        source=source,
        arch=arch,
        tag=tag_for_settings_key(key),
        task="classification",
        weights=WeightsFile(
            urls=tuple(urls),
            filename=filename,
            hash_prefix=parse_hash_prefix(filename),
            format="pickle",
        ),
        is_default=is_default,
        num_classes=nc,
        label_set="imagenet-1k",
        label_offset=1 if background else 0,
        data=_data_config(entry),
        output="logits",
        num_params=num_params,
        origin=ORIGIN,
        first_conv=first_conv,
        classifier=(head,) if head else (),
        notes=tuple(notes),
        extra={
            "settings_key": key,
            "rows_in_file": rows_in_file,
            "input_space": entry["input_space"],
            "input_range": list(entry["input_range"]),
        },
    )
