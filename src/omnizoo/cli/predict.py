"""``omnizoo predict MODEL IMAGE...``: classify image files with a model's own preprocessing.

    omnizoo predict resnet50 cat.jpg dog.png --topk 3
    omnizoo predict timm:convnext_tiny photos/ --json > answers.json
    omnizoo predict timm:tf_efficientnet_lite0 cat.jpg --checkpoint lite0.pth

A directory argument stands for the image files inside it (recursively, sorted). Images that
cannot be read are reported (one ``omnizoo: error: <file>: <cause>`` line each on stderr, or
as ``"error"`` in ``--json``) and the others are still classified; the exit code is then 1
(0 when every image was classified).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``predict`` command."""
    p = subparsers.add_parser(
        "predict",
        help="classify images with a pretrained model",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model name, e.g. resnet50 or timm:convnext_tiny")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or directories")
    p.add_argument("--topk", type=int, default=5, help="answers per image (default 5)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch", help="inference engine"
    )
    p.add_argument("--num-workers", type=int, default=None, help="decoding threads")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None,
        help="load weights from this local file instead of the model's download",
    )
    p.set_defaults(func=run)


def _expand(paths: list[str]) -> list[str]:
    from ..data.stats import iter_image_files

    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(str(p) for p in iter_image_files(path))
        else:
            out.append(raw)
    return out


def run(args: argparse.Namespace) -> int:
    """Build the Predictor, classify, print."""
    from ..inference.predictor import Predictor
    from .main import error_line

    images = _expand(args.images)
    predictor = Predictor(
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        backend=args.backend,
        num_workers=args.num_workers,
        checkpoint_path=args.checkpoint,
    )
    results = predictor.predict(images, topk=args.topk, on_error="return")
    if args.json:
        doc = {
            "model": getattr(predictor.card, "name", args.model),
            "device": str(predictor.device),
            "backend": predictor.backend,
            "results": [
                {
                    "image": image,
                    "predictions": [p.to_dict() for p in preds],
                    "error": str(results.errors[i]) if i in results.errors else None,
                }
                for i, (image, preds) in enumerate(zip(images, results, strict=True))
            ],
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for i, (image, preds) in enumerate(zip(images, results, strict=True)):
            if i in results.errors:  # one line; the message names the file
                print(f"omnizoo: error: {error_line(results.errors[i])}", file=sys.stderr)
                continue
            print(f"{image}:")
            for p in preds:
                print(f"  {p.score:7.4f}  {p.label} ({p.index})")
    return 1 if results.errors else 0
