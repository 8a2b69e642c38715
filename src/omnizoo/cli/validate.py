"""``omnizoo validate MODEL... DATA``: the accuracy of models on your own labelled images,
each with its own preprocessing and labels, beside the figure its card publishes.

    omnizoo validate tf_efficientnet_lite0 photos/                  # photos/<class>/*.jpg
    omnizoo validate resnet50 mobilenet_v3_large pets.csv --limit 500   # path,label rows
    omnizoo validate resnet50 val/ --ground-truth LOC_val_solution.csv  # ImageNet's val set
    omnizoo validate resnet50 photos/ --backend onnxruntime --precision int8 --out runs/r50
    omnizoo validate resnet50 photos/ --out runs/r50 --resume       # after an interruption

DATA: an ImageFolder tree (class_name/*.jpg), a CSV (header path,label) or JSONL of
path,label rows (paths relative to the file), or ImageNet's validation folder with its
ground-truth file (--ground-truth: the devkit's ILSVRC2012_validation_ground_truth.txt with
meta.mat or map_clsloc.txt beside it, LOC_val_solution.csv, or caffe's val.txt). Class names
are matched to the model's labels as ImageNet synsets (n01440764), label names (tench) or
indices (0); --class-map FILE (CSV dataset_class,model_label) maps the others. --limit N
takes N images spread over the classes; --classes a,b only those classes.

With --out DIR: predictions.jsonl (appended per batch; --resume continues it), results.json,
per_class.csv, confusion.csv and confusion.png (with matplotlib); several models write to
DIR/<model>/. Images that cannot be decoded are reported once and skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``validate`` command."""
    from .predict import add_trust_option, positive_int

    p = subparsers.add_parser(
        "validate",
        help="accuracy of models on your own labelled images (top-1/top-5, per class, confusion)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", metavar="MODEL... DATA", nargs="+", help="models, then the data")
    p.add_argument(
        "--layout", choices=("auto", "folder", "csv", "jsonl", "imagenet"), default="auto"
    )
    p.add_argument("--ground-truth", metavar="FILE", default=None, help="ImageNet val labels")
    p.add_argument(
        "--limit", type=positive_int, default=None, help="at most N images, over all classes"
    )
    p.add_argument("--classes", default=None, help="only these classes (comma-separated)")
    p.add_argument(
        "--class-map", metavar="FILE", default=None, help="CSV dataset_class,model_label"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "int8", "int8-static", "int8-dynamic"),
        default="auto",
    )
    p.add_argument("--calibration", metavar="DIR", default=None)
    p.add_argument("--min-agreement", type=float, default=0.99)
    p.add_argument("--num-workers", type=int, default=None, help="decoding threads")
    p.add_argument("--checkpoint", metavar="PATH", default=None, help="local weights file")
    add_trust_option(p)
    p.add_argument("--out", metavar="DIR", default=None, help="write the results here")
    p.add_argument("--resume", action="store_true", help="continue DIR/predictions.jsonl")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    # the Predictor options are predict's (cli.predict._predictor_kwargs reads them all)
    p.set_defaults(func=run, task=None, score_threshold=0.5, labels=None)


def run(args: argparse.Namespace) -> int:
    """Validate each model in turn; print a table (or JSON)."""
    from ..errors import ConfigurationError
    from ..inference.validate import validate
    from .predict import _predictor_kwargs

    if len(args.names) < 2:
        raise ConfigurationError("give at least one MODEL and then the DATA folder or file")
    *models, data = args.names
    if args.resume and not args.out:
        raise ConfigurationError("--resume continues the run in --out DIR: give --out")
    results = []
    for model in models:
        out = None
        if args.out:
            out = Path(args.out) if len(models) == 1 else Path(args.out) / _slug(model)
        results.append(
            validate(
                model,
                data,
                layout=args.layout,
                ground_truth=args.ground_truth,
                limit=args.limit,
                classes=args.classes.split(",") if args.classes else None,
                class_map=args.class_map,
                out=out,
                resume=args.resume,
                progress=args.progress,
                engine=args.engine,
                **_predictor_kwargs(args),
            )
        )
    if args.json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=2)
        print()
        return 0
    _table(results)
    for r in results:  # each was reported once, as it happened; the files list them
        if r.errors:
            print(
                f"omnizoo: {r.model}: {len(r.errors)} image(s) could not be read and were "
                "skipped (listed in results.json with --out)",
                file=sys.stderr,
            )
    return 1 if any(r.errors for r in results) else 0


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


def _table(results: list[Any]) -> None:
    header = ("model", "backend", "precision", "n", "top-1 (95% CI)", "top-5", "card")
    rows = [
        (
            r.model,
            r.backend,
            r.precision,
            f"{r.n:,}",
            f"{r.top1:.1f} ({r.top1_ci[0]:.1f}-{r.top1_ci[1]:.1f})",
            f"{r.top5:.1f}",
            f"{r.card_top1:.1f}" if r.card_top1 is not None else "no published figure",
        )
        for r in results
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
