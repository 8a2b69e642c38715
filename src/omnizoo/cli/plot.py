"""``omnizoo plot -o zoo.png``: ImageNet top-1 against GFLOPs (log scale), one colour per
source, the Pareto front drawn; the same filters as ``omnizoo list`` (every set of weights
with both figures). Needs matplotlib (``pip install 'omnizoo[plot]'``).

    omnizoo plot -o zoo.png
    omnizoo plot 'resnet*' 'convnext*' --max-gflops 20 -o resnets.svg
    omnizoo plot --measured -o mine.png    # after `omnizoo benchmark` (and `omnizoo validate`)

``--measured``: top-1 against the latency at batch 1 that ``omnizoo benchmark`` measured on
this machine, for every model measured here (PATTERNs filter them); the top-1 measured on
your data by ``omnizoo validate`` where there is one (filled markers), else the card's
(hollow). The Pareto front is drawn and its members named.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``plot`` command."""
    from .models import add_metric_filters

    p = subparsers.add_parser(
        "plot",
        help="plot ImageNet top-1 against GFLOPs",
        description="Plot every set of weights with an ImageNet top-1 and GFLOPs: top-1 "
        "against GFLOPs (log scale), one colour per source, the Pareto front drawn.",
    )
    p.add_argument("pattern", nargs="*", default=["*"], metavar="PATTERN")
    p.add_argument("-o", "--output", required=True, help="the image file: .png, .svg or .pdf")
    p.add_argument("--source", default=None, help="only this source")
    p.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN", help="leave these out"
    )
    add_metric_filters(p)
    p.add_argument("--title", default=None)
    p.add_argument("--no-labels", action="store_true", help="do not name the Pareto front")
    p.add_argument(
        "--measured",
        action="store_true",
        help="top-1 (measured on your data, else the card's) against the latency measured "
        "on this machine by `omnizoo benchmark`",
    )
    p.set_defaults(func=run_plot)


def _measured_points(args: argparse.Namespace) -> tuple[list[Any], str]:
    """The models measured on this machine matching the patterns, as plot points."""
    import fnmatch
    import sys

    from ..errors import UnknownModelError
    from ..inference.measured import read_measured
    from ..overview.plot import MeasuredPoint
    from ..registry.registry import get_card

    measured = read_measured()
    points = []
    for name in sorted({r.model for r in measured.speed}):
        lat = measured.latency(name)
        if lat is None or lat.latency_ms_median <= 0:
            continue
        if not any(
            fnmatch.fnmatchcase(n, pat)
            for pat in args.pattern
            for n in (name, name.split(":", 1)[-1], name.split(":", 1)[-1].split(".", 1)[0])
        ) or (args.source and not name.startswith(args.source + ":")):
            continue
        acc = measured.top1(name)
        try:
            card = get_card(name)
        except UnknownModelError:
            card = None
        top1 = acc.top1 if acc is not None else (card.top1 if card is not None else None)
        if top1 is None:
            print(f"{name}: no top-1 (neither measured nor on its card): left out", file=sys.stderr)
            continue
        source = card.source if card is not None else name.split(":", 1)[0]
        points.append(MeasuredPoint(name, source, lat.latency_ms_median, top1, acc is not None))
    m = measured.machine
    machine = f"{m.get('cpu', 'this machine')} ({m.get('cores', '?')} cores)"
    if m.get("gpu") not in (None, "none"):
        machine += f" + {m['gpu']}"
    return points, machine


def run_plot(args: argparse.Namespace) -> int:
    from ..overview.plot import plot_measured, plot_zoo, plottable

    if args.measured:
        points, machine = _measured_points(args)
        path, front = plot_measured(points, args.output, title=args.title, machine=machine)
        mine = sum(p.measured for p in points)
        print(
            f"{path}: {len(points)} models ({mine} with top-1 measured on your data); "
            f"Pareto front: {', '.join(front)}"
        )
        return 0
    from ..registry.registry import get_card, list_models

    names = list_models(
        args.pattern,
        source=args.source,
        pretrained=True,
        exclude=args.exclude,
        min_top1=args.min_top1,
        max_params=args.max_params,
        max_gflops=args.max_gflops,
    )
    cards = plottable([get_card(n) for n in names])
    path = plot_zoo(cards, args.output, title=args.title, label_front=not args.no_labels)
    print(f"{path}: {len(cards)} models")
    return 0
