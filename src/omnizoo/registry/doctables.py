"""Generate docs/models/*.md: one Markdown table per source, straight from the cards.

    python -m omnizoo.registry.doctables docs/models

Nothing in the tables is typed by hand; re-run after upgrading a source library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .card import ModelCard
from .index import load_index
from .registry import list_sources

__all__ = ["main", "source_table", "write_tables"]


def _cell(value: object) -> str:
    if value is None or value == "":
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _size(card: ModelCard) -> str:
    d = card.data
    return f"{d.input_size[1]}x{d.input_size[2]}"


def _check(card: ModelCard) -> str:
    w = card.weights
    if w is None:
        return ""
    if w.sha256:
        return "sha256"
    if w.hash_prefix:
        return f"prefix `{w.hash_prefix}`"
    return "none"


def source_table(source: str, cards: Sequence[ModelCard], key: str = "") -> str:
    """The Markdown page for one source."""
    archs = sorted({c.arch for c in cards})
    weighted = [c for c in cards if c.weights is not None]
    lines = [
        f"# {source} models",
        "",
        "Generated from the installed library's own metadata by "
        f"`python -m omnizoo.registry.doctables` (index `{key}`).",
        "",
        f"{len(archs)} architectures, {len(weighted)} sets of weights. The default weights of "
        "an architecture are marked **bold**; `omnizoo info NAME` shows the full card.",
        "",
        "| name | task | classes | input | interp | mean/std | acc@1 | acc@5 | params (M) "
        "| GFLOPs | format | hash check | licence |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
        params = f"{c.num_params / 1e6:.1f}" if c.num_params else ""
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
                    params,
                    c.gflops,
                    c.weights.format if c.weights else "",
                    _check(c),
                    c.license,
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_tables(outdir: str | Path, sources: Sequence[str] | None = None) -> list[Path]:
    """Write ``<outdir>/<source>.md`` for each source (skipping unavailable ones) and an
    index page; returns the paths written."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    summary = [
        "# Model tables",
        "",
        "| source | architectures | weights | page |",
        "|---|---|---|---|",
    ]
    for source in sources or list_sources():
        try:
            idx = load_index(source)
        except Exception as exc:  # an unavailable source gets a line, not a crash
            summary.append(f"| {source} | - | - | unavailable: {_cell(exc)} |")
            continue
        cards = list(idx.cards())
        path = out / f"{source}.md"
        path.write_text(source_table(source, cards, idx.key), encoding="utf-8")
        written.append(path)
        n_w = sum(1 for c in cards if c.weights is not None)
        summary.append(f"| {source} | {len(idx.archs)} | {n_w} | [{source}.md]({source}.md) |")
    index = out / "README.md"
    index.write_text("\n".join(summary) + "\n", encoding="utf-8")
    written.append(index)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m omnizoo.registry.doctables OUTDIR", file=sys.stderr)
        return 2
    for path in write_tables(args[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
