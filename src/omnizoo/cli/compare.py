"""``omnizoo compare A B C``: models side by side (metrics and where they come from, input
size and preprocessing, licence, weights file, how its download is verified and whether it is
in the cache). Metadata only: nothing is built or downloaded.

    omnizoo compare resnet50 timm:resnet50.a1_in1k cadene:se_resnext50_32x4d
    omnizoo compare convnext_tiny vit_b_16 --format json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["compare_rows", "register"]


def register(subparsers: Any) -> None:
    """Add the ``compare`` command."""
    p = subparsers.add_parser(
        "compare",
        help="compare models side by side",
        description="Models side by side: metrics (and their sources), input size, "
        "preprocessing, licence, weights file and its verification state.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table: one column per model; json: JSON Lines, one object per model",
    )
    p.set_defaults(func=run_compare)


def _check(card: Any) -> str:
    w = card.weights
    if w is None:
        return "no weights (architecture only)"
    if w.sha256:
        return f"sha256 pinned ({w.sha256[:12]}...)"
    if w.hash_prefix:
        return f"sha256 prefix {w.hash_prefix} (file name)"
    if w.hf_hub_id:
        return "sha256 announced by the Hugging Face Hub"
    return "none published (pin with `omnizoo lock`)"


def _cached(card: Any) -> str:
    if card.weights is None:
        return "-"
    from .models import cached_line

    return cached_line(card.weights.urls).split(":", 1)[1].strip()


def _num(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def compare_rows(cards: list[Any]) -> list[tuple[str, list[str]]]:
    """(field, one text per card) for the side-by-side view."""
    from ..registry.listing import file_mb

    extra_keys: list[str] = []
    for card in cards:
        for key, _ in card.extra_metrics:
            if key not in extra_keys:
                extra_keys.append(key)
    rows: list[tuple[str, list[str]]] = [
        ("source", [c.source for c in cards]),
        ("task", [c.task for c in cards]),
        ("top1", [_num(c.top1) for c in cards]),
        ("top5", [_num(c.top5) for c in cards]),
        ("dataset", [c.metrics_dataset or "-" for c in cards]),
        ("top1 from", [c.cited("top1") or "-" for c in cards]),
    ]
    rows += [(key, [_num(dict(c.extra_metrics).get(key)) for c in cards]) for key in extra_keys]
    rows += [
        ("params (M)", [_num(c.num_params and c.num_params / 1e6, "{:.2f}") for c in cards]),
        ("params from", [c.cited("num_params") or "-" for c in cards]),
        ("GFLOPs", [_num(c.gflops) for c in cards]),
        ("GFLOPs from", [c.cited("gflops") or "-" for c in cards]),
        ("input size", ["x".join(map(str, c.data.input_size)) for c in cards]),
        (
            "resize/crop",
            [
                f"{c.data.scale_size} -> {c.data.crop_size[0]}x{c.data.crop_size[1]} "
                f"({c.data.crop_mode}, crop_pct {c.data.crop_pct:.3f})"
                for c in cards
            ],
        ),
        ("interpolation", [c.data.interpolation for c in cards]),
        ("mean", [", ".join(f"{v:.4g}" for v in c.data.mean) for c in cards]),
        ("std", [", ".join(f"{v:.4g}" for v in c.data.std) for c in cards]),
        (
            "colour, range",
            [
                f"{c.data.color_order}, {c.data.value_range[0]:g}-{c.data.value_range[1]:g}"
                for c in cards
            ],
        ),
        ("classes", [str(c.num_classes) for c in cards]),
        ("licence", [c.license or "-" for c in cards]),
        ("weights format", [c.weights.format if c.weights else "-" for c in cards]),
        ("file size (MB)", [_num(file_mb(c)) for c in cards]),
        ("verified by", [_check(c) for c in cards]),
        ("cached", [_cached(c) for c in cards]),
    ]
    return rows


def run_compare(args: argparse.Namespace) -> int:
    from ..registry.registry import get_card

    cards = [get_card(name) for name in args.models]
    if args.format == "json":
        from ..registry.listing import file_mb

        for card in cards:
            data = card.to_dict()
            data["name"] = card.name
            data["file_mb"] = file_mb(card)
            data["verified_by"] = _check(card)
            print(json.dumps(data, ensure_ascii=False))
        return 0
    rows = [("name", [c.name for c in cards]), *compare_rows(cards)]
    label = max(len(r[0]) for r in rows)
    widths = [max(len(r[1][i]) for r in rows) for i in range(len(cards))]
    out = sys.stdout
    for field, values in rows:
        cells = "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))
        out.write(f"{field.ljust(label)}  {cells}".rstrip() + "\n")
    out.flush()
    return 0
