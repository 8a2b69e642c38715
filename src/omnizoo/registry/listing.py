"""Rows of model metrics for listings and comparisons, and their text formats (an aligned
table for a terminal, JSON Lines and CSV for scripts). Plain data: nothing is built.

Columns (:data:`COLUMNS`): ``name``, ``source``, ``arch``, ``tag``, ``task``, ``default``,
``top1``, ``top5`` (ImageNet-1k, percent), ``params`` (millions), ``gflops`` (billions of
multiply-adds at the card's input size), ``size`` (input image size, e.g. ``224`` or
``240x320``), ``file_mb`` (the weights file in MB, where the source says), ``license``,
``weights`` (``yes``: has pretrained weights).

>>> from omnizoo.values.card import ModelCard
>>> card = ModelCard(source="timm", arch="resnet50", tag="a1_in1k", top1=80.382,
...                  num_params=25_557_032, gflops=4.11)
>>> row = card_row(card, ["name", "top1", "params", "gflops", "size"])
>>> row
{'name': 'timm:resnet50.a1_in1k', 'top1': 80.382, 'params': 25.557, 'gflops': 4.11, 'size': '224'}
>>> print(format_rows([row], ["name", "top1", "params", "gflops", "size"], "table"))
name                   top1   params  gflops  size
timm:resnet50.a1_in1k  80.38  25.56   4.11    224
>>> print(format_rows([row], ["name", "top1"], "csv"), end="")
name,top1
timm:resnet50.a1_in1k,80.382
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..values.card import ModelCard

__all__ = ["COLUMNS", "FORMATS", "card_row", "file_mb", "format_rows", "parse_columns"]

FORMATS = ("table", "json", "csv")


def file_mb(card: ModelCard) -> float | None:
    """The weights file's size in MB: the bytes the source pins (ONNX zoo), else the size
    torchvision's Weights.meta gives (``_file_size``, MB); None where no source says."""
    if card.weights is not None and card.weights.size:
        return round(card.weights.size / 1e6, 1)
    value = card.extra.get("file_size_mb")
    return None if value is None else round(float(value), 1)


def _input(card: ModelCard) -> str:
    _c, h, w = card.data.input_size
    return f"{h}" if h == w else f"{h}x{w}"


def _params(card: ModelCard) -> float | None:
    return None if card.num_params is None else round(card.num_params / 1e6, 3)


#: column -> (how to read it from a card, decimals shown in a table or None for text)
COLUMNS: dict[str, tuple[Callable[[ModelCard], Any], int | None]] = {
    "name": (lambda c: c.name, None),
    "source": (lambda c: c.source, None),
    "arch": (lambda c: c.arch, None),
    "tag": (lambda c: c.tag, None),
    "task": (lambda c: c.task, None),
    "default": (lambda c: c.is_default, None),
    "top1": (lambda c: c.top1, 2),
    "top5": (lambda c: c.top5, 2),
    "params": (_params, 2),
    "gflops": (lambda c: c.gflops, 2),
    "size": (_input, None),
    "file_mb": (file_mb, 1),
    "license": (lambda c: c.license, None),
    "weights": (lambda c: c.weights is not None, None),
}


def parse_columns(spec: str | Sequence[str]) -> list[str]:
    """``"name,top1,params"`` (or a list) -> checked column names."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    cols = [c.strip().lower() for c in names if c.strip()]
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown or not cols:
        raise ConfigurationError(
            f"unknown column(s) {unknown or spec!r}; choose from {', '.join(COLUMNS)}"
        )
    return cols


def card_row(card: ModelCard, columns: Sequence[str]) -> dict[str, Any]:
    """The values of ``columns`` for one card (None where unknown)."""
    return {c: COLUMNS[c][0](card) for c in columns}


def _text(value: Any, decimals: int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if decimals is not None and isinstance(value, (int, float)):
        return f"{value:.{decimals}f}"
    return str(value)


def format_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> str:
    """``rows`` as an aligned ``table`` (with a header), ``json`` (JSON Lines: one object per
    row, raw values) or ``csv`` (a header, then raw values)."""
    if fmt == "json":
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r[c] is None else r[c] for c in columns])
        return buf.getvalue()
    if fmt != "table":
        raise ConfigurationError(f"format {fmt!r}: choose from {', '.join(FORMATS)}")
    cells = [list(columns)] + [[_text(r[c], COLUMNS[c][1]) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )
