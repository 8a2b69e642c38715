"""A picture of the zoo: ImageNet top-1 against GFLOPs (log scale), one colour per source,
with the Pareto front (no other model is both cheaper and more accurate) drawn and named; and
the same for measured figures (:func:`plot_measured`: accuracy against the latency measured
on this machine by ``omnizoo benchmark``).

Labels are placed, not just offset (:func:`place_labels`): each name tries positions around
its point, nearest first, and takes the first whose box lies inside the axes and meets no
other label nor the legend; a name with no free place is left out rather than drawn over
another.

Needs matplotlib (``pip install 'omnizoo[plot]'``); :func:`pareto_front` does not.

>>> pareto_front([("a", 1.0, 70.0), ("b", 2.0, 69.0), ("c", 4.0, 80.0), ("d", 4.0, 75.0)])
['a', 'c']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, DependencyError
from ..values.card import ModelCard

__all__ = [
    "SOURCE_COLOURS",
    "MeasuredPoint",
    "measured_figure",
    "pareto_front",
    "place_labels",
    "plot_measured",
    "plot_zoo",
    "plottable",
    "zoo_figure",
]

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


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DependencyError(
            f"the plot needs matplotlib: pip install 'omnizoo[plot]' ({exc})"
        ) from exc
    return plt


def _check_suffix(out: Path) -> None:
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigurationError(f"{out}: the plot is written as .png, .svg or .pdf")


def _save(fig: Any, out: Path) -> None:
    import matplotlib

    out.parent.mkdir(parents=True, exist_ok=True)
    # svg: no timestamp, no random ids, so the same cards give the same file
    meta = {"Date": None} if out.suffix.lower() in (".svg", ".pdf") else {"Software": None}
    if out.suffix.lower() == ".svg":
        matplotlib.rcParams["svg.hashsalt"] = "omnizoo"
    fig.savefig(out, metadata=meta)


#: Where a label may sit around its point, in points: nearest ring first, then further out
#: (with a leader line), right of the point before left, below before above.
_DIRECTIONS = ((1, -1), (1, 1), (-1, -1), (-1, 1), (0, -1.4), (0, 1.4), (1.4, 0), (-1.4, 0))
_RINGS = (4.0, 12.0, 24.0, 40.0)


def place_labels(
    ax: Any,
    labels: Sequence[tuple[str, float, float]],
    *,
    avoid: Sequence[Any] = (),
    fontsize: float = 6.5,
) -> list[Any]:
    """Annotate ``ax`` with ``(text, x, y)`` labels that stay inside the axes and overlap
    neither each other nor the artists in ``avoid`` (the legend); returns the texts drawn
    (a label with no free place is left out). Call it after the layout is final
    (``tight_layout``): positions are measured in the figure's pixels."""
    fig = ax.figure
    fig.canvas.draw()  # lays out the legend ("best" is chosen when drawn) and the ticks
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [a.get_window_extent(renderer) for a in avoid]
    drawn = []
    for text, x, y in labels:
        for ring in _RINGS:
            for dx, dy in _DIRECTIONS:
                ha = "left" if dx > 0 else "right" if dx < 0 else "center"
                va = "top" if dy < 0 else "bottom" if dy > 0 else "center"
                far = ring > _RINGS[0]
                t = ax.annotate(
                    text,
                    (x, y),
                    xytext=(dx * ring, dy * ring),
                    textcoords="offset points",
                    ha=ha,
                    va=va,
                    fontsize=fontsize,
                    zorder=20,
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.4"} if far else None,
                )
                box = t.get_window_extent(renderer).padded(1.0)
                fits = (
                    box.x0 >= inside.x0
                    and box.x1 <= inside.x1
                    and box.y0 >= inside.y0
                    and box.y1 <= inside.y1
                )
                if fits and not any(box.overlaps(b) for b in taken):
                    taken.append(box)
                    drawn.append(t)
                    break
                t.remove()
            else:
                continue
            break
    return drawn


@dataclass(frozen=True)
class MeasuredPoint:
    """A model on the measured plot: its latency at batch 1 on this machine (ms) and its
    top-1 (%), ``measured`` on the user's data (``omnizoo validate``) or else the card's."""

    name: str
    source: str
    latency_ms: float
    top1: float
    measured: bool


def measured_figure(
    points: Sequence[MeasuredPoint], *, title: str | None = None, machine: str = "this machine"
) -> tuple[Any, list[str]]:
    """The figure of :func:`plot_measured` (open: close it with ``plt.close``) and the
    Pareto front's names."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    try:
        for measured, marker_label in (
            (True, "top-1 measured on your data (omnizoo validate)"),
            (False, "top-1 from the card"),
        ):
            group = [p for p in points if p.measured is measured]
            if not group:
                continue
            colours = [SOURCE_COLOURS.get(p.source, "#7f7f7f") for p in group]
            ax.scatter(
                [p.latency_ms for p in group],
                [p.top1 for p in group],
                s=36,
                facecolors=colours if measured else "none",
                edgecolors=colours,
                linewidths=1.2,
                label=marker_label,
                zorder=3,
            )
        xy = {p.name: (p.latency_ms, p.top1) for p in points}
        front = pareto_front([(n, x, y) for n, (x, y) in xy.items()])
        ax.step(
            [xy[n][0] for n in front],
            [xy[n][1] for n in front],
            where="post",
            color="black",
            linewidth=1.0,
            label=f"Pareto front ({len(front)})",
            zorder=2,
        )
        ax.set_xscale("log")
        ax.set_xlabel(f"latency at batch 1 on {machine} (ms, median, log scale)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(title or f"omnizoo: {len(points)} models measured on {machine}")
        ax.grid(True, which="both", alpha=0.25)
        ax.margins(x=0.15, y=0.12)  # room for the labels of the extreme points
        legend = ax.legend(loc="best", fontsize=8)  # few points: where they are not
        fig.tight_layout()
        place_labels(ax, [(n, *xy[n]) for n in front], avoid=[legend], fontsize=7.5)
    except BaseException:
        plt.close(fig)
        raise
    return fig, front


def plot_measured(
    points: Sequence[MeasuredPoint],
    path: str | Path,
    *,
    title: str | None = None,
    machine: str = "this machine",
) -> tuple[Path, list[str]]:
    """Draw top-1 against measured latency (log scale) into ``path``; filled markers for an
    accuracy measured on the user's data, hollow ones for the card's. The Pareto front (no
    model both faster and more accurate) is drawn and each of its members named. Returns the
    path and the front's names (fastest first)."""
    out = Path(path)
    _check_suffix(out)
    if not points:
        raise ConfigurationError(
            "nothing measured on this machine yet: run `omnizoo benchmark MODEL...` first"
        )
    fig, front = measured_figure(points, title=title, machine=machine)
    try:
        _save(fig, out)
    finally:
        _pyplot().close(fig)
    return out, front


def zoo_figure(
    points: Sequence[ModelCard], *, title: str | None = None, label_front: bool = True
) -> Any:
    """The figure of :func:`plot_zoo` for plottable cards (open: close it with ``plt.close``)."""
    plt = _pyplot()
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
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per image at the card's input size (multiply-adds, log scale)")
        ax.set_ylabel("ImageNet-1k top-1 (%)")
        ax.set_title(title or f"omnizoo: {len(points)} sets of ImageNet weights")
        ax.grid(True, which="both", alpha=0.25)
        legend = ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        if label_front:
            labels = [(c.name.split(":", 1)[1], *xy[c.name]) for c in front]
            place_labels(ax, labels, avoid=[legend])
    except BaseException:
        plt.close(fig)
        raise
    return fig


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
    _check_suffix(out)
    points = plottable(cards)
    if not points:
        raise ConfigurationError("no model with both an ImageNet top-1 and GFLOPs to plot")
    fig = zoo_figure(points, title=title, label_front=label_front)
    try:
        _save(fig, out)
    finally:
        _pyplot().close(fig)
    return out
