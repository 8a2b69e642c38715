"""A picture of the zoo: ImageNet top-1 against GFLOPs (log scale), one colour per source,
with the Pareto front (no other model is both cheaper and more accurate) drawn and named.

Needs matplotlib (``pip install 'omnizoo[plot]'``); :func:`pareto_front` does not.

>>> pareto_front([("a", 1.0, 70.0), ("b", 2.0, 69.0), ("c", 4.0, 80.0), ("d", 4.0, 75.0)])
['a', 'c']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigurationError, DependencyError
from ..values.card import ModelCard

__all__ = ["SOURCE_COLOURS", "pareto_front", "plot_zoo", "plottable"]

#: one colour per source (matplotlib's tab10, in the table order)
SOURCE_COLOURS = {
    "torchvision": "#1f77b4",
    "timm": "#ff7f0e",
    "cadene": "#2ca02c",
    "efficientnet": "#d62728",
    "onnx": "#9467bd",
}


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the points ``(name, cost, accuracy)`` that no other point beats: each is more
    accurate than every point at most as costly. Ordered by cost."""
    front: list[str] = []
    best = float("-inf")
    for name, _cost, acc in sorted(points, key=lambda p: (p[1], -p[2], p[0])):
        if acc > best:
            front.append(name)
            best = acc
    return front


def plottable(cards: Sequence[ModelCard]) -> list[ModelCard]:
    """The cards with an ImageNet-1k top-1 and a positive GFLOPs figure."""
    return [
        c
        for c in cards
        if c.top1 is not None
        and c.gflops
        and c.gflops > 0
        and (c.metrics_dataset or "").lower().startswith("imagenet")
    ]


def plot_zoo(
    cards: Sequence[ModelCard],
    path: str | Path,
    *,
    title: str | None = None,
    label_front: bool = True,
) -> Path:
    """Draw ``cards`` (those with top-1 and GFLOPs; see :func:`plottable`) into ``path``
    (``.png``, ``.svg`` or ``.pdf``, by its suffix). Returns the path."""
    out = Path(path)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigurationError(f"{out}: the plot is written as .png, .svg or .pdf")
    points = plottable(cards)
    if not points:
        raise ConfigurationError("no model with both an ImageNet top-1 and GFLOPs to plot")
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DependencyError(
            f"the plot needs matplotlib: pip install 'omnizoo[plot]' ({exc})"
        ) from exc
    fig, ax = plt.subplots(figsize=(11, 7), dpi=110)
    try:
        by_source: dict[str, list[ModelCard]] = {}
        for card in points:
            by_source.setdefault(card.source, []).append(card)
        # the biggest source underneath, small and faint; the others on top of it
        order = sorted(by_source, key=lambda s: -len(by_source[s]))
        for rank, source in enumerate(order):
            group = by_source[source]
            ax.scatter(
                [float(c.gflops or 0) for c in group],
                [float(c.top1 or 0) for c in group],
                s=10 if rank == 0 else 24,
                alpha=0.45 if rank == 0 else 0.9,
                color=SOURCE_COLOURS.get(source, "#7f7f7f"),
                label=f"{source} ({len(group)})",
                edgecolors="none" if rank == 0 else "white",
                linewidths=0.4,
                zorder=1 + rank,
            )
        named = {c.name: c for c in points}
        xy = {c.name: (float(c.gflops or 0), float(c.top1 or 0)) for c in points}
        front = [named[n] for n in pareto_front([(n, x, y) for n, (x, y) in xy.items()])]
        ax.step(
            [xy[c.name][0] for c in front],
            [xy[c.name][1] for c in front],
            where="post",
            color="black",
            linewidth=1.0,
            label=f"Pareto front ({len(front)})",
            zorder=10,
        )
        if label_front:  # name the front, a label at most every 0.25 decade of GFLOPs
            import math

            last = float("-inf")
            for c in front:
                x, y = xy[c.name]
                if math.log10(x) - last < 0.25:
                    continue
                last = math.log10(x)
                ax.annotate(
                    c.name.split(":", 1)[1],
                    (x, y),
                    fontsize=6.5,
                    xytext=(4, -4),
                    textcoords="offset points",
                    va="top",
                    zorder=20,
                )
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per image at the card's input size (multiply-adds, log scale)")
        ax.set_ylabel("ImageNet-1k top-1 (%)")
        ax.set_title(title or f"omnizoo: {len(points)} sets of ImageNet weights")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        # svg: no timestamp, no random ids, so the same cards give the same file
        meta = {"Date": None} if out.suffix.lower() in (".svg", ".pdf") else {"Software": None}
        if out.suffix.lower() == ".svg":
            matplotlib.rcParams["svg.hashsalt"] = "omnizoo"
        fig.savefig(out, metadata=meta)
    finally:
        plt.close(fig)
    return out
