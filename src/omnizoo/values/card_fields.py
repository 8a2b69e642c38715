"""A :class:`~omnizoo.values.card.ModelCard` from fields read out of a file.

A saved folder's ``card.json`` and an exported ``.onnx``'s ``omnizoo.card_json`` are untrusted
input: :func:`card_from_fields` checks every known field for type, range and size (through
:class:`omnizoo.schema.Fields`) before a card exists, so a card read from a file can never
claim 10**12 classes, a 60000x60000 input or categories that do not match its class count.
A violation is one :class:`~omnizoo.errors.MetadataError` naming the file and the field.

Unknown keys are ignored (a newer omnizoo may write more); a field the card class has but
this schema does not know yet is passed through as plain JSON data.

>>> from omnizoo.schema import Fields
>>> card_from_fields(Fields({"source": "timm", "arch": "resnet18", "num_classes": 3}, "c.json"))
ModelCard('timm:resnet18', task='classification', classes=3)
>>> card_from_fields(Fields({"source": "timm", "arch": "x", "num_classes": "3 cats"}, "c.json"))
Traceback (most recent call last):
...
omnizoo.errors.MetadataError: c.json: field 'num_classes': expected an integer, got str '3 cats'
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from ..errors import MetadataError
from ..schema import MAX_CLASSES, Fields
from .card import OUTPUTS, TASKS, WEIGHT_FORMATS, ModelCard, WeightsFile
from .data_config import DataConfig

__all__ = ["OUTPUTS", "card_from_fields", "sha256_field"]  # OUTPUTS: re-exported from .card

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_NAME = 256  # an architecture, tag or source name
_MAX_ITEMS = 4096  # urls, notes, classifier prefixes, metrics, provenance entries
_MAX_PARAMS = 10**13


def sha256_field(f: Fields, key: str) -> str | None:
    """An optional sha256 hex digest (lower-cased)."""
    value = f.optional_text(key, max_len=64)
    if value is not None and not _SHA256.fullmatch(value):
        raise f.error(key, f"{value!r} is not a sha256 hex digest (64 hex digits)")
    return None if value is None else value.lower()


def card_from_fields(f: Fields) -> ModelCard:
    """The card ``f`` holds (the shape :meth:`ModelCard.to_dict` writes), every field checked."""
    num_classes = f.integer("num_classes", lo=0, hi=MAX_CLASSES)
    offset = f.optional_integer("label_offset", lo=0, hi=max(num_classes, 1)) or 0
    categories = f.optional_str_list("categories", max_items=MAX_CLASSES)
    if categories is not None and len(categories) not in (num_classes, num_classes - offset):
        raise f.error(
            "categories",
            f"{len(categories)} names for num_classes={num_classes}"
            + (f" (label_offset={offset})" if offset else "")
            + "; one name per class",
        )
    data = f.optional_object("data")
    known: dict[str, Any] = {
        "source": f.text("source", max_len=_NAME),
        "arch": f.text("arch", max_len=_NAME),
        "tag": f.optional_text("tag", max_len=_NAME),
        "task": f.choice("task", TASKS, "classification"),
        "weights": _weights(f.optional_object("weights")),
        "is_default": bool(f.optional_flag("is_default")),
        "num_classes": num_classes,
        "label_set": f.optional_text("label_set", max_len=_NAME),
        "categories": None if categories is None else tuple(categories),
        "label_offset": offset,
        "data": DataConfig() if data is None else DataConfig.from_fields(data),
        "output": f.choice("output", OUTPUTS, "logits"),
        "top1": f.optional_number("top1", lo=0.0, hi=100.0),
        "top5": f.optional_number("top5", lo=0.0, hi=100.0),
        "metrics_dataset": f.optional_text("metrics_dataset", max_len=_NAME),
        "extra_metrics": tuple((k, float(v)) for k, v in _pairs(f, "extra_metrics", float)),
        "num_params": f.optional_integer("num_params", lo=0, hi=_MAX_PARAMS),
        "gflops": f.optional_number("gflops", lo=0.0),
        "provenance": tuple((k, str(v)) for k, v in _pairs(f, "provenance", str)),
        "license": f.optional_text("license"),
        "paper": f.optional_text("paper"),
        "origin": f.optional_text("origin"),
        "first_conv": f.optional_text("first_conv", max_len=_NAME),
        "classifier": tuple(f.optional_str_list("classifier", max_items=_MAX_ITEMS) or ()),
        "notes": tuple(f.optional_str_list("notes", max_items=_MAX_ITEMS) or ()),
        "lineage": _object(f, "lineage"),
        "extra": _object(f, "extra"),
    }
    try:
        return ModelCard(**_newer(ModelCard, f, known))
    except (TypeError, ValueError) as exc:  # a newer field of a type this schema cannot check
        raise MetadataError(f.path, f.prefix or None, f"not a valid model card ({exc})") from None


def _weights(f: Fields | None) -> WeightsFile | None:
    if f is None:
        return None
    urls = f.optional_str_list("urls", max_items=_MAX_ITEMS) or []
    known: dict[str, Any] = {
        "urls": tuple(urls),
        "filename": f.text("filename", max_len=_NAME),
        "sha256": sha256_field(f, "sha256"),
        "hash_prefix": f.optional_text("hash_prefix", max_len=64),
        "size": f.optional_integer("size", lo=0),
        "format": f.choice("format", WEIGHT_FORMATS, "pickle"),
        "hf_hub_id": f.optional_text("hf_hub_id", max_len=_NAME),
        "origin": f.optional_text("origin", max_len=_NAME),
        "verification": f.optional_text("verification", max_len=_NAME),
    }
    try:
        return WeightsFile(**_newer(WeightsFile, f, known))
    except (TypeError, ValueError) as exc:
        raise MetadataError(f.path, f.prefix, f"not a valid weights entry ({exc})") from None


def _newer(cls: Any, f: Fields, known: dict[str, Any]) -> dict[str, Any]:
    """``known`` plus the fields of ``cls`` newer than this schema (as plain JSON data), less
    the fields ``cls`` does not have (an older card class)."""
    names = {fld.name for fld in dataclasses.fields(cls)}
    out = {k: v for k, v in known.items() if k in names}
    for name in names - set(known):
        if name in f:
            out[name] = _plain(f.data[name])
    return out


def _pairs(f: Fields, key: str, kind: type) -> list[tuple[str, Any]]:
    """``[[name, value], ...]`` (``extra_metrics``: finite numbers; ``provenance``: text)."""
    value = f.data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > _MAX_ITEMS:
        raise f.error(key, f"expected a list of [name, value] pairs, got {type(value).__name__}")
    out = []
    for i, pair in enumerate(value):
        if kind is str:
            ok = isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)
        else:
            ok = (
                isinstance(pair, list)
                and len(pair) == 2
                and isinstance(pair[1], (int, float))
                and not isinstance(pair[1], bool)
                and math.isfinite(pair[1])
            )
        if not ok or not isinstance(pair[0], str):
            want = "text" if kind is str else "a finite number"
            raise f.error(f"{key}[{i}]", f"expected [name, {want}], got {pair!r:.80}")
        out.append((pair[0], pair[1]))
    return out


def _object(f: Fields, key: str) -> dict[str, Any]:
    """A free-form JSON object (``extra``, ``lineage``): its size is bounded by the file's."""
    value = f.optional_object(key)
    return {} if value is None else dict(value.data)


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
