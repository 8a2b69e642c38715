"""``omnizoo export MODEL OUT.onnx``: export a model to ONNX, verified in onnxruntime.

    omnizoo export resnet50 resnet50.onnx
    omnizoo export timm:convnext_tiny convnext.onnx --fold-preprocessing
    omnizoo export timm:tf_efficientnet_lite0 lite0.onnx --checkpoint finetuned.pth
    omnizoo export torchvision:resnet18 r18.onnx --random-init --opset 18

The model's preprocessing (its DataConfig), card name and label set are stored in the file's
metadata; ``--fold-preprocessing`` also puts scaling and mean/std normalisation in the graph, so
it takes uint8 RGB images already resized and cropped. The file is written only once
onnxruntime reproduced the torch outputs (unless ``--no-verify``); otherwise the command fails
with the largest difference and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .predict import add_trust_option

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``export`` command."""
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX (verified in onnxruntime)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model name, e.g. resnet50 or timm:convnext_tiny")
    p.add_argument("output", metavar="OUT", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; 18 dynamo)")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip running the file in onnxruntime against the torch model",
    )
    p.add_argument(
        "--fold-preprocessing",
        action="store_true",
        help="the graph takes uint8 0-255 RGB NCHW and normalises itself",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None,
        help="load weights from this local file (e.g. a fine-tuned checkpoint)",
    )
    add_trust_option(p)
    p.add_argument(
        "--random-init",
        action="store_true",
        help="export the architecture with random weights (no download)",
    )
    p.add_argument("--num-classes", type=int, default=None, help="build with a new head size")
    p.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        metavar="N",
        default=None,
        help="H W (or one N for NxN) instead of the model's own input size",
    )
    p.add_argument("--static-batch", action="store_true", help="fix the batch dimension")
    p.add_argument(
        "--exporter",
        choices=("auto", "torchscript", "dynamo"),
        default="auto",
        help="torch exporter (default auto: TorchScript, then dynamo if that fails)",
    )
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative to max|output| (1e-3)")
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the model, export it, print one line (or JSON)."""
    from ..errors import ConfigurationError
    from ..export.onnx import export_onnx_report
    from ..registry.factory import create_model

    if args.random_init and args.checkpoint:
        raise ConfigurationError("--random-init and --checkpoint contradict each other")
    input_size: Any = None
    if args.input_size:
        if len(args.input_size) not in (1, 2):
            raise ConfigurationError("--input-size takes one number (N: NxN) or two (H W)")
        input_size = args.input_size[0] if len(args.input_size) == 1 else tuple(args.input_size)
    kwargs: dict[str, Any] = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.trust:
        kwargs["trust"] = args.trust
    if args.checkpoint:
        model = create_model(args.model, checkpoint_path=Path(args.checkpoint), **kwargs)
    else:
        model = create_model(args.model, pretrained=not args.random_init, **kwargs)
    report = export_onnx_report(
        model,
        args.output,
        verify=args.verify,
        dynamic_batch=not args.static_batch,
        opset=args.opset,
        input_size=input_size,
        fold_preprocessing=args.fold_preprocessing,
        atol=args.atol,
        rtol=args.rtol,
        exporter=args.exporter,
    )
    if args.json:
        doc = {
            "path": str(report.path),
            "model": report.metadata.get("omnizoo.card"),
            "exporter": report.exporter,
            "opset": report.opset,
            "input_shape": list(report.input_shape),
            "input_dtype": report.input_dtype,
            "outputs": report.output_names,
            "verified": report.verified,
            "max_abs_diff": report.max_abs_diff,
            "seconds": round(report.seconds, 3),
            "metadata": report.metadata,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"wrote {report.summary()}")
    return 0
