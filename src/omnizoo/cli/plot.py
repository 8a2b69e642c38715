"""``omnizoo plot -o zoo.png``: ImageNet top-1 against GFLOPs (log scale), one colour per
source, the Pareto front drawn; the same filters as ``omnizoo list`` (every set of weights
with both figures). Needs matplotlib (``pip install 'omnizoo[plot]'``).

    omnizoo plot -o zoo.png
    omnizoo plot 'resnet*' 'convnext*' --max-gflops 20 -o resnets.svg
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
    p.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from ..overview.plot import plot_zoo, plottable
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
