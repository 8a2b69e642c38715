"""Generate docs/models/: one Markdown table per source, straight from the cards, an index
page with what each source's figures cover, and the picture of the zoo (``zoo.png``, top-1
against GFLOPs; needs matplotlib).

    python -m omnizoo.overview.tables docs/models

Nothing in the tables is typed by hand; re-run after upgrading a source library.
"""

from __future__ import annotations

import collections
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ..registry.index import load_index
from ..registry.resolution import list_sources
from ..values.card import ModelCard

__all__ = ["PLOT_NAME", "hash_check", "main", "source_table", "write_tables"]

PLOT_NAME = "zoo.png"
#: robustness sets shown as columns when a source has them: (extra metric, header)
_ROBUST = (
    ("imagenet-real:top1", "ReaL"),
    ("imagenetv2:top1", "V2"),
    ("imagenet-sketch:top1", "Sketch"),
    ("imagenet-a:top1", "IN-A"),
    ("imagenet-r:top1", "IN-R"),
)


def _cell(value: object) -> str:
    if value is None or value == "":
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _size(card: ModelCard) -> str:
    d = card.data
    return f"{d.input_size[1]}x{d.input_size[2]}"


def hash_check(card: ModelCard) -> str:
    """How a download of the card's weights is verified: ``sha256`` (pinned by the card),
    ``prefix <hex>`` (the file name's hash prefix), ``Hub sha256`` (announced by the Hugging
    Face Hub), ``none``; ``""`` for a card without weights. The tables and the zoo page show it.

    >>> from omnizoo.values.card import ModelCard, WeightsFile
    >>> weights = WeightsFile(urls=(), filename="a-1f2e.pth", hash_prefix="1f2e")
    >>> hash_check(ModelCard(source="t", arch="a", weights=weights))
    'prefix 1f2e'
    """
    w = card.weights
    if w is None:
        return ""
    if w.sha256:
        return "sha256"
    if w.hash_prefix:
        return f"prefix {w.hash_prefix}"
    if w.hf_hub_id:
        return "Hub sha256"
    return "none"


def _origin_of(text: str) -> str:
    """A provenance text without its per-card details (sizes, rows), for counting."""
    text = re.sub(r"\s*\(.*\)$", "", text)
    return re.sub(r" at \d+x\d+x\d+$", "", text)


def _figures_summary(cards: Sequence[ModelCard]) -> list[str]:
    lines = []
    for field, label in (
        ("top1", "top-1"),
        ("num_params", "parameters"),
        ("gflops", "GFLOPs"),
    ):
        counts = collections.Counter(
            _origin_of(c.cited(field) or "") for c in cards if getattr(c, field) is not None
        )
        have = sum(counts.values())
        parts = [f"{n} from {origin or 'the library'}" for origin, n in counts.most_common()]
        lines.append(
            f"* **{label}**: {have} of {len(cards)} cards"
            + (": " + "; ".join(parts) if parts else "")
        )
    return lines


def source_table(source: str, cards: Sequence[ModelCard], key: str = "") -> str:
    """The Markdown page for one source."""
    archs = sorted({c.arch for c in cards})
    weighted = [c for c in cards if c.weights is not None]
    robust = [(k, h) for k, h in _ROBUST if any(k in dict(c.extra_metrics) for c in cards)]
    lines = [
        f"# {source} models",
        "",
        "Generated from the installed library's own metadata by "
        f"`python -m omnizoo.overview.tables` (index `{key}`).",
        "",
        f"{len(archs)} architectures, {len(weighted)} sets of weights. The default weights of "
        "an architecture are marked **bold**; `omnizoo info NAME` shows the full card, "
        "`omnizoo compare A B` several side by side.",
        "",
        "Where the figures come from (each card cites its own; `omnizoo info NAME`):",
        "",
        *_figures_summary(cards),
        "",
        "top-1/top-5: ImageNet-1k validation, percent"
        + (
            " (" + ", ".join(h for _, h in robust) + ": top-1 on the robustness sets)"
            if robust
            else ""
        )
        + "; params in millions; GFLOPs: billions of multiply-adds per image at the input size.",
        "",
        "| name | task | classes | input | interp | mean/std | top-1 | top-5 | "
        + "".join(f"{h} | " for _, h in robust)
        + "params (M) | GFLOPs | format | hash check | licence |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(robust) + "---|---|---|---|---|",
    ]
    for c in sorted(cards, key=lambda c: (c.arch, not c.is_default, c.tag or "")):
        name = f"`{c.name}`"
        if c.is_default and c.tag:
            name = f"**{name}**"
        norm = (
            "imagenet"
            if tuple(round(v, 3) for v in c.data.mean) == (0.485, 0.456, 0.406)
            else ",".join(f"{v:.3g}" for v in c.data.mean)
            + " / "
            + ",".join(f"{v:.3g}" for v in c.data.std)
        )
        params = f"{c.num_params / 1e6:.2f}" if c.num_params else ""
        extra = dict(c.extra_metrics)
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    name,
                    c.task,
                    c.num_classes,
                    _size(c),
                    c.data.interpolation,
                    norm,
                    c.top1,
                    c.top5,
                    *(extra.get(k) for k, _ in robust),
                    params,
                    c.gflops,
                    c.weights.format if c.weights else "",
                    re.sub(r"^prefix (\w+)$", r"prefix `\1`", hash_check(c)),
                    c.license,
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _index_page(rows: list[str], cards: list[ModelCard], plot: str | None) -> str:
    from .plot import pareto_front, plottable

    lines = [
        "# Model tables",
        "",
        "Generated by `python -m omnizoo.overview.tables docs/models` from the cards "
        "(see [../registry.md](../registry.md) for where each figure comes from).",
        "",
        "| source | architectures | weights | with top-1 | with params | with GFLOPs | page |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    points = plottable(cards)
    if plot:
        lines += [
            "## The zoo: ImageNet top-1 against GFLOPs",
            "",
            f"![top-1 against GFLOPs, one colour per source, the Pareto front drawn]({plot})",
            "",
            f"{len(points)} sets of weights with both an ImageNet-1k top-1 and GFLOPs "
            "(`omnizoo plot -o zoo.png`, same filters as `omnizoo list`).",
            "",
        ]
    named = {c.name: c for c in points}
    front = pareto_front([(c.name, float(c.gflops or 0), float(c.top1 or 0)) for c in points])
    if front:
        lines += [
            "## The Pareto front",
            "",
            "No other set of weights here is both cheaper and more accurate "
            "(`omnizoo list --pretrained --sort top1 --max-gflops G` finds the best under G).",
            "",
            "| name | top-1 | GFLOPs | params (M) | input |",
            "|---|---|---|---|---|",
        ]
        for name in front:
            c = named[name]
            params = f"{c.num_params / 1e6:.2f}" if c.num_params else ""
            lines.append(f"| `{name}` | {c.top1} | {c.gflops} | {params} | {_size(c)} |")
        lines.append("")
    return "\n".join(lines)


def write_tables(
    outdir: str | Path, sources: Sequence[str] | None = None, *, plot: bool = True
) -> list[Path]:
    """Write ``<outdir>/<source>.md`` for each source (skipping unavailable ones), an index
    page and, with ``plot`` and matplotlib installed, ``zoo.png``; returns the paths written."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[str] = []
    every: list[ModelCard] = []
    for source in sources or list_sources():
        try:
            idx = load_index(source)
        except Exception as exc:  # an unavailable source gets a line, not a crash
            rows.append(f"| {source} | - | - | - | - | - | unavailable: {_cell(exc)} |")
            continue
        cards = list(idx.cards())
        if not cards and not sources:
            continue  # an empty source (`user` with nothing registered) is no table
        every.extend(cards)
        path = out / f"{source}.md"
        path.write_text(source_table(source, cards, idx.key), encoding="utf-8")
        written.append(path)
        n_w = [c for c in cards if c.weights is not None]
        rows.append(
            f"| {source} | {len(idx.archs)} | {len(n_w)} "
            f"| {sum(c.top1 is not None for c in n_w)} "
            f"| {sum(c.num_params is not None for c in cards)} of {len(cards)} "
            f"| {sum(c.gflops is not None for c in cards)} of {len(cards)} "
            f"| [{source}.md]({source}.md) |"
        )
    picture: str | None = None
    if plot:
        from ..errors import DependencyError
        from .plot import plot_zoo, plottable

        try:
            written.append(plot_zoo(plottable(every), out / PLOT_NAME))
            picture = PLOT_NAME
        except DependencyError as exc:
            print(f"doctables: no plot ({exc})", file=sys.stderr)
    index = out / "README.md"
    index.write_text(_index_page(rows, every, picture), encoding="utf-8")
    written.append(index)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    plot = "--no-plot" not in args
    args = [a for a in args if a != "--no-plot"]
    if len(args) != 1:
        print("usage: python -m omnizoo.overview.tables OUTDIR [--no-plot]", file=sys.stderr)
        return 2
    for path in write_tables(args[0], plot=plot):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
