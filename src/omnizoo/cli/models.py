"""``omnizoo list | info | explain``: what the registry knows (no torch import except
``info --summary``, which builds the model).

    omnizoo list 'resnet*' --source timm --pretrained
    omnizoo list --pretrained --sort top1 --columns name,top1,params,gflops,size --limit 20
    omnizoo list --pretrained --min-top1 80 --max-gflops 5 --format csv
    omnizoo list --task detection --json
    omnizoo info resnet50 --json
    omnizoo info timm:resnet18.a1_in1k --summary
    omnizoo info model.onnx                 # the card export_onnx wrote into the file
    omnizoo info runs/ft                    # a save_pretrained folder's card.json
    omnizoo explain resnet50.a1_in1k
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_metric_filters", "card_lines", "register"]


def register(subparsers: Any) -> None:
    """Add the ``list``, ``info`` and ``explain`` commands."""
    from ..registry.listing import COLUMNS

    p = subparsers.add_parser(
        "list",
        help="list model names (fnmatch pattern)",
        description="List fully qualified model names: one per "
        "architecture, or one per set of weights with --pretrained.",
    )
    p.add_argument(
        "pattern",
        nargs="*",
        default=["*"],
        metavar="PATTERN",
        help="fnmatch pattern(s), with or without 'source:' (default: *)",
    )
    p.add_argument("--source", default=None, help="only this source")
    p.add_argument(
        "--task", default=None, help="only this task (classification, detection, segmentation, ...)"
    )
    p.add_argument(
        "--pretrained", action="store_true", help="one line per set of weights (source:arch.tag)"
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out names matching PATTERN (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="a JSON list of the names")
    add_metric_filters(p)
    p.add_argument(
        "--sort",
        default=None,
        metavar="KEY",
        help="order by top1 or top5 (best first), params or gflops (smallest first), or name; "
        "'-KEY' reverses (e.g. --sort=-params)",
    )
    p.add_argument(
        "--columns",
        default="name",
        metavar="COLS",
        help="comma list of: " + ", ".join(COLUMNS) + " (default: name)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table: aligned columns with a header (bare names when only 'name' is shown); "
        "json: JSON Lines, one object per model; csv",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N only")
    p.set_defaults(func=run_list)

    p = subparsers.add_parser(
        "info",
        help="show a model's card",
        description="Show the model card: weights file, classes, "
        "preprocessing, metrics, licence, origin.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a model name, a save_pretrained folder, or an .onnx/.safetensors file omnizoo wrote",
    )
    p.add_argument("--json", action="store_true", help="the card as JSON")
    p.add_argument(
        "--summary",
        action="store_true",
        help="also build the model (random init) and print a layer summary",
    )
    p.set_defaults(func=run_info)

    p = subparsers.add_parser("explain", help="show how a name resolves across sources")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=run_explain)


def add_metric_filters(p: Any) -> None:
    """``--min-top1``, ``--max-params``, ``--max-gflops`` (shared by list and plot)."""
    p.add_argument(
        "--min-top1", type=float, default=None, metavar="PCT", help="ImageNet top-1 >= PCT"
    )
    p.add_argument(
        "--max-params", type=float, default=None, metavar="M", help="at most M million parameters"
    )
    p.add_argument("--max-gflops", type=float, default=None, metavar="G", help="at most G GFLOPs")


def run_list(args: argparse.Namespace) -> int:
    from ..registry.listing import card_row, format_rows, parse_columns
    from ..registry.registry import get_card, list_models

    columns = _with_sort_column(parse_columns(args.columns), args.sort)
    names = list_models(
        args.pattern,
        source=args.source,
        task=args.task,
        pretrained=args.pretrained,
        exclude=args.exclude,
        sort=args.sort,
        min_top1=args.min_top1,
        max_params=args.max_params,
        max_gflops=args.max_gflops,
    )
    if args.limit is not None:
        names = names[: max(args.limit, 0)]
    if not names and args.source is not None:
        from ..registry.adapters import get_adapter

        problem = get_adapter(args.source).listing_problem()
        if problem is not None:
            print(f"omnizoo list: {problem}", file=sys.stderr)
            return 1
    out = sys.stdout
    if args.json:
        print(json.dumps(names, indent=1))
    elif columns == ["name"] and args.format == "table":
        for name in names:
            out.write(name + "\n")
    else:
        if {"params", "gflops"} & set(columns):  # what is still uncounted: one batch
            from ..registry.index import fill_figures

            fill_figures(names)
        rows = []
        for name in names:
            row = card_row(get_card(name), columns)
            if "name" in row:
                row["name"] = name  # an architecture's row shows the architecture
            rows.append(row)
        text = format_rows(rows, columns, args.format)
        out.write(text if text.endswith("\n") or not text else text + "\n")
    out.flush()
    return 0


def _with_sort_column(columns: list[str], sort: str | None) -> list[str]:
    """``columns`` plus the sort key's column: a listing ordered by top1 shows top1 (a
    ranking whose figure is hidden reads as arbitrary)."""
    from ..registry.listing import COLUMNS
    from ..registry.registry import SORT_KEYS

    key = (sort or "").strip().lower().lstrip("+-")
    if key in SORT_KEYS and key in COLUMNS and key not in columns:
        return [*columns, key]
    return columns


def card_lines(card: Any) -> list[str]:
    """Human-readable lines for one card."""
    d = card.data
    lines = [
        f"name:         {card.name}",
        f"task:         {card.task}",
        f"default:      {'yes' if card.is_default else 'no'}",
    ]
    lines += _weights_lines(card)
    labels = card.label_set or (f"{len(card.categories)} inline" if card.categories else "-")
    lines.append(
        f"classes:      {card.num_classes} ({labels})"
        + (f", offset {card.label_offset}" if card.label_offset else "")
    )
    lines.append(
        f"input:        {d.input_size} {d.color_order} range {tuple(d.value_range)} "
        f"{d.interpolation}, resize {d.scale_size}, crop {d.crop_mode} (crop_pct {d.crop_pct:.3f})"
    )
    lines.append(
        f"normalise:    mean {tuple(round(v, 5) for v in d.mean)} "
        f"std {tuple(round(v, 5) for v in d.std)}"
    )
    if card.top1 is not None:
        lines.append(
            f"metrics:      acc@1 {card.top1}  acc@5 {card.top5}  ({card.metrics_dataset})"
        )
        if card.cited("top1"):
            lines.append(f"  from:       {card.cited('top1')}")
    for key, value in card.extra_metrics:
        lines.append(f"              {key} {value}")
    if card.num_params:
        lines.append(f"params:       {card.num_params:,} ({card.num_params / 1e6:.2f} M)")
        if card.cited("num_params"):
            lines.append(f"  from:       {card.cited('num_params')}")
    if card.gflops is not None:
        lines.append(f"GFLOPs:       {card.gflops} (multiply-adds, at {card.data.input_size})")
        if card.cited("gflops"):
            lines.append(f"  from:       {card.cited('gflops')}")
    for label, value in (("license", card.license), ("paper", card.paper), ("origin", card.origin)):
        if value:
            lines.append(f"{label + ':':<14}{value}")
    for note in card.notes:
        lines.append(f"note:         {note}")
    return lines


def _weights_lines(card: Any) -> list[str]:
    """The weights a card states: the published file and how it is checked, a model's own
    file (local or saved) with its verification state, or none, with the lineage."""
    w = card.weights
    lineage = dict(card.lineage or {})
    lines: list[str] = []
    if w is None:
        start = lineage.get("start")
        what = (
            "none (architecture only)"
            if not lineage
            else "none (random init)"
            if start == "random" and not lineage.get("trained")
            else "none on file (in memory: see lineage)"
        )
        lines.append(f"weights:      {what}")
    elif w.origin in ("local", "saved"):
        where = "a local file" if w.origin == "local" else "the saved folder's own file"
        digest = f"sha256 {w.sha256}" if w.sha256 else "no sha256 recorded"
        lines += [
            f"weights:      {w.filename} ({where}, no upstream URL)",
            f"              {w.format}, {digest}" + (f", {w.size} bytes" if w.size else ""),
            f"verified:     {w.verification or 'unverified'}",
        ]
    else:
        check = (
            f"sha256 {w.sha256}"
            if w.sha256
            else f"sha256 prefix {w.hash_prefix}"
            if w.hash_prefix
            else "sha256 announced by the Hugging Face Hub (origin), checked at download"
            if w.hf_hub_id
            else "no hash published (pin it with `omnizoo lock`)"
        )
        lines += [
            f"weights:      {w.url}",
            f"              {w.format}, {check}" + (f", {w.size} bytes" if w.size else ""),
        ]
        for extra_url in w.urls[1:]:
            lines.append(f"  fallback:   {extra_url}")
        if w.verification:
            lines.append(f"verified:     {w.verification} (when it was loaded)")
    if lineage.get("summary"):
        lines.append(f"lineage:      {lineage['summary']}")
    return lines


def cached_line(urls: Any) -> str:
    """Whether the weights are in the cache, and how they were verified (a JSON read)."""
    from ..weights.download import get_cache
    from ..weights.verification import state_of

    cache = get_cache()
    for url in urls:
        ref = cache.ref(url)
        if ref is not None and cache.blob_path(ref["sha256"]).is_file():
            revision = ref.get("revision")
            at = f", revision {revision[:12]}" if isinstance(revision, str) else ""
            return f"cached:       {ref['sha256'][:12]} ({state_of(ref)}{at})"
    return "cached:       no (`omnizoo download NAME` fetches and verifies it)"


def run_info(args: argparse.Namespace) -> int:
    card = _info_card(args.model)
    if args.json:
        print(json.dumps(card.to_dict(), indent=1))
    else:
        print("\n".join(card_lines(card)))
        if card.weights is not None and card.weights.urls:  # a file with a download URL
            print(cached_line(card.weights.urls))
    if args.summary:
        from ..inference.layer_summary import layer_summary
        from ..registry.factory import create_model

        # a saved model is built from its folder (its card names no source to build from)
        model = create_model(args.model if card.source == "local" else card)
        print(layer_summary(model, tuple(card.data.input_size)))
    return 0


def _info_card(model: str) -> Any:
    """The card ``info`` shows: a model file's own (an ``.onnx`` from ``export_onnx``, a
    ``.safetensors`` from ``save_pretrained``: what :func:`omnizoo.read_card` reads, the
    reader ``predict model.onnx`` uses), else the registry's or a saved folder's
    (:func:`omnizoo.get_card`)."""
    from pathlib import Path

    from ..registry.registry import get_card

    path = Path(model).expanduser()
    if path.suffix.lower() in (".onnx", ".safetensors") and path.is_file():
        from ..saved.folder import read_card

        return read_card(path)
    return get_card(model)


def run_explain(args: argparse.Namespace) -> int:
    from ..registry.resolution import explain

    print(explain(args.name))
    return 0
