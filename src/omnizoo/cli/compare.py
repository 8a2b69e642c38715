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

__all__ = ["compare_rows", "measured_rows", "register"]


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


def measured_rows(cards: list[Any], measured: Any) -> list[tuple[str, list[str]]]:
    """The rows of what was measured on this machine (``omnizoo benchmark``, ``omnizoo
    validate``) for ``cards``; none when nothing was."""
    lat = [measured.latency(c.name) for c in cards]
    best = [measured.throughput(c.name) for c in cards]
    acc = [measured.top1(c.name) for c in cards]
    rows: list[tuple[str, list[str]]] = []
    if any(lat):
        rows.append(
            (
                "measured ms (batch 1)",
                [
                    "-"
                    if r is None
                    else f"{r.latency_ms_median:.2f} ({r.backend} {r.precision} "
                    f"{r.device}, {r.threads} threads)"
                    for r in lat
                ],
            )
        )
    if any(best):
        rows.append(
            (
                "measured img/s",
                [
                    "-"
                    if r is None
                    else f"{r.throughput_ips:.1f} (batch {r.batch_size}, {r.backend})"
                    for r in best
                ],
            )
        )
    if any(acc):
        rows.append(
            (
                "measured top1",
                ["-" if r is None else f"{r.top1:.2f} on {r.n} images ({r.dataset})" for r in acc],
            )
        )
    return rows


def _measured_json(card: Any, measured: Any) -> dict[str, Any] | None:
    from dataclasses import asdict

    lat, best, acc = (
        measured.latency(card.name),
        measured.throughput(card.name),
        measured.top1(card.name),
    )
    if lat is None and best is None and acc is None:
        return None
    return {
        "fingerprint": measured.fingerprint,
        "latency": asdict(lat) if lat else None,
        "throughput": asdict(best) if best else None,
        "top1": asdict(acc) if acc else None,
    }


def run_compare(args: argparse.Namespace) -> int:
    from ..inference.measured import read_measured
    from ..registry.registry import get_card
    from .table import side_by_side, terminal_width

    cards = [get_card(name) for name in args.models]
    measured = read_measured()  # this machine's; a damaged file is a warning, read as empty
    if args.format == "json":
        from ..registry.listing import file_mb

        for card in cards:
            data = card.to_dict()
            data["name"] = card.name
            data["file_mb"] = file_mb(card)
            data["verified_by"] = _check(card)
            data["measured"] = _measured_json(card, measured)
            print(json.dumps(data, ensure_ascii=False))
        return 0
    rows = [("name", [c.name for c in cards]), *compare_rows(cards)]
    rows[5:5] = measured_rows(cards, measured)  # beside the published top1/top5 and dataset
    out = sys.stdout
    out.write("\n".join(side_by_side(rows, terminal_width())) + "\n")
    out.flush()
    return 0
