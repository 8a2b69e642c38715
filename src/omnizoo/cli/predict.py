"""``omnizoo predict MODEL IMAGE...``: run a model on images, with its own preprocessing,
labels and task (classification, detection, keypoints, segmentation).

    omnizoo predict resnet50 cat.jpg dog.png --topk 3
    omnizoo predict ssdlite320_mobilenet_v3_large street.jpg --score-threshold 0.6
    omnizoo predict timm:convnext_tiny photos/ --json > answers.json
    omnizoo predict resnet50 'photos/**/*.jpg' --out preds.jsonl       # resumable, with progress
    omnizoo predict resnet50 photos/ --engine ray --out preds.parquet [--address HOST:6379]
    omnizoo predict model.onnx cat.jpg          # an omnizoo export: its labels, preprocessing
    omnizoo predict finetuned.onnx cat.jpg --labels labels.txt  # own labels, one per line
    omnizoo predict resnet50 photos/ --precision int8 --calibration some_photos/ -v
    omnizoo predict timm:resnet50 cat.jpg --checkpoint model_best.pth.tar --trust argparse.Namespace

IMAGE: files, directories (their image files, recursively, sorted) or glob patterns. Without
``--out`` the answers are printed (text, or one JSON document with ``--json``). With ``--out``
(``.jsonl`` JSON Lines, ``.csv`` or a ``.parquet`` folder) rows are written as they come,
images already in the file are skipped (an interrupted run resumes), and progress goes to
stderr. A ``.json`` name is refused: it promises one JSON document (use ``--json > FILE``).

``--out`` only ever appends to, repairs or (with ``--overwrite``) removes what omnizoo wrote
there, known by the record it keeps beside the file (``.NAME.omnizoo.json``) or in the folder
(``_omnizoo.json``): an existing file or folder of anyone else's, or a symlink, is refused
untouched.

``--engine ray`` runs on a Ray cluster (``--address`` or ``RAY_ADDRESS``; else the cluster
started on this machine by ``ray start --head``, or a local one for the run); it needs
``--out``. An ``--address`` that does not answer within ``OMNIZOO_RAY_CONNECT_TIMEOUT``
seconds (30) is an error.

Images that cannot be read are reported (one ``omnizoo: error: <file>: <cause>`` line each on
stderr, or as ``"error"`` in ``--json`` and the output files) and the others are still
predicted, by either engine; the exit code is then 1 (0 when every image was predicted).

``--precision bf16`` (CPUs with native bf16 only) and ``--precision int8`` (onnxruntime
quantization, cached) are measured first: the share of ``--calibration`` images (default:
built-in photos) whose top-1 class is fp32's must reach ``--min-agreement`` (0.99), else the
command stops with the measured figure; ``--verbose`` shows it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_trust_option", "positive_int", "register"]


def register(subparsers: Any) -> None:
    """Add the ``predict`` command."""
    p = subparsers.add_parser(
        "predict",
        help="predict with a pretrained model (classes, boxes, masks) on images",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL", help="model name (resnet50, timm:convnext_tiny) or .onnx file"
    )
    p.add_argument("images", metavar="IMAGE", nargs="+", help="files, directories or globs")
    p.add_argument(
        "--topk",
        type=positive_int,
        default=None,
        metavar="K",
        help="classes per image, 1 or more (default 5); for detection/segmentation: the most kept",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="inference engine (default auto: the fastest that matches torch; see --verbose)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "int8", "int8-static", "int8-dynamic"),
        default="auto",
        help="auto (default: fp32 on CPU, bf16/fp16 autocast on CUDA); on the CPU bf16 and "
        "int8 run only when their top-1 agreement with fp32 reaches --min-agreement",
    )
    p.add_argument(
        "--calibration",
        metavar="DIR",
        default=None,
        help="images to measure (and calibrate) reduced precision on (default: built-in photos)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="least top-1 agreement with fp32 on the calibration images (default 0.99)",
    )
    p.add_argument("--num-workers", type=int, default=None, help="decoding threads")
    p.add_argument("--task", default=None, help="override the card's task")
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="detection: drop detections scoring less (default 0.5)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None,
        help="load weights from this local file instead of the model's download",
    )
    add_trust_option(p)
    p.add_argument(
        "--labels",
        metavar="FILE",
        default=None,
        help="label file, one label per line in output order (instead of the model's own)",
    )
    p.add_argument("--masks", metavar="DIR", default=None, help="segmentation: save class maps")
    p.add_argument("-v", "--verbose", action="store_true", help="say which backend and why")
    out = p.add_argument_group("writing to a file (resumable)")
    out.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="preds.jsonl (JSON Lines), preds.csv or preds.parquet (a folder); not .json",
    )
    out.add_argument(
        "--format",
        choices=("jsonl", "csv", "parquet"),
        default=None,
        help="the format of --out (default: from its suffix)",
    )
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="remove what omnizoo wrote at --out and start afresh (never anyone else's file)",
    )
    out.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="auto: a bar on a terminal, else a line per 1000 images",
    )
    ray = p.add_argument_group("Ray (--engine ray)")
    ray.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default) or ray; both make an error row of an unreadable image",
    )
    ray.add_argument(
        "--address",
        default=None,
        help="Ray cluster HOST:PORT (else RAY_ADDRESS); tried for OMNIZOO_RAY_CONNECT_TIMEOUT s",
    )
    ray.add_argument("--actors", type=int, default=None, help="model replicas (default CPUs/4)")
    ray.add_argument("--cpus-per-actor", type=float, default=None)
    ray.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.set_defaults(func=run)


def add_trust_option(p: Any) -> None:
    """``--trust GLOBAL`` (repeatable): ``create_model(trust=[...])`` on the command line."""
    p.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="GLOBAL",
        help="allow this global (module.Name) in a trusted --checkpoint, still without "
        "arbitrary unpickling; e.g. --trust argparse.Namespace for a timm train.py checkpoint "
        "(repeatable)",
    )


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of 1 or more, else a usage error (exit 2) naming
    the value and the range (``--topk 0`` once printed five classes as if it were unset)."""
    try:
        value = int(text)
    except ValueError:
        value = 0  # not a whole number: the same message
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give a whole number, 1 or more")
    return value


def run(args: argparse.Namespace) -> int:
    """Build the Predictor (or the Ray run), predict, print or write."""
    from ..errors import ConfigurationError
    from ..inference.runs import expand_images
    from ..inference.writers import output_format

    if args.out:
        output_format(args.out, args.format)  # a .json name is refused before any model build
    images = expand_images(args.images)
    if args.engine == "ray":
        if not args.out:
            raise ConfigurationError("--engine ray writes its results: give --out preds.parquet")
        return _run_ray(args, images)
    predictor = _predictor(args)
    if args.verbose:
        print(f"omnizoo: {predictor!r}", file=sys.stderr)
        print(f"omnizoo: backend {predictor.backend_choice}", file=sys.stderr)
        choice = predictor.backend_choice
        if choice.export:
            print(f"omnizoo: {choice.export}", file=sys.stderr)
        why = f" ({choice.precision_reason})" if choice.precision_reason else ""
        print(f"omnizoo: precision {choice.precision}{why}", file=sys.stderr)
    if args.out:
        return _run_to_file(args, predictor, images)
    return _run_print(args, predictor, images)


def _predictor_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from ..inference.open_model import read_label_file

    return {
        "device": args.device,
        "batch_size": args.batch_size,
        "backend": args.backend,
        "num_workers": args.num_workers,
        "checkpoint_path": args.checkpoint,
        "trust": args.trust or None,
        "task": args.task,
        "score_threshold": args.score_threshold,
        "labels": read_label_file(args.labels) if args.labels else None,
        "precision": args.precision,
        "calibration": args.calibration,
        "min_agreement": args.min_agreement,
    }


def _predictor(args: argparse.Namespace) -> Any:
    from ..inference.predictor import Predictor

    return Predictor(args.model, **_predictor_kwargs(args))


def _run_print(args: argparse.Namespace, predictor: Any, images: list[str]) -> int:
    from .main import error_line
    from .predict_output import dump_json, json_document, print_entry, save_mask

    progress = args.progress != "none" and len(images) >= 1000
    results = predictor.predict(images, topk=args.topk, on_error="return", progress=progress)
    used: set[str] = set()
    if args.masks and predictor.task == "segmentation":
        for i, (image, entry) in enumerate(zip(images, results, strict=True)):
            if i not in results.errors:
                name = Path(image).stem
                stem, n = name, 1
                while stem in used:
                    n += 1
                    stem = f"{name}-{n}"
                used.add(stem)
                save_mask(entry, stem, Path(args.masks))
    if args.json:
        dump_json(json_document(predictor, args.model, images, results))
    else:
        for i, (image, entry) in enumerate(zip(images, results, strict=True)):
            if i in results.errors:  # one line; the message names the file
                print(f"omnizoo: error: {error_line(results.errors[i])}", file=sys.stderr)
                continue
            print_entry(image, entry, predictor.task)
    return 1 if results.errors else 0


def _run_to_file(args: argparse.Namespace, predictor: Any, images: list[str]) -> int:
    from ..inference.runs import predict_to_file

    summary = predict_to_file(
        predictor,
        images,
        args.out,
        topk=args.topk,
        format=args.format,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    print(f"omnizoo: {summary}", file=sys.stderr)
    return 1 if summary.errors else 0


def _run_ray(args: argparse.Namespace, images: list[str]) -> int:
    from ..inference.distributed import predict_ray

    kwargs = _predictor_kwargs(args)
    batch_size = kwargs.pop("batch_size")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if kwargs.get("device") == "auto":
        kwargs.pop("device")  # each actor: CPU, or its GPU with --gpus-per-actor
    for key in ("checkpoint_path", "calibration"):  # each actor runs in its own folder
        if kwargs.get(key):
            kwargs[key] = str(Path(kwargs[key]).resolve())
    summary = predict_ray(
        args.model,
        images,
        args.out,
        topk=args.topk,
        score_threshold=args.score_threshold,
        predictor_kwargs=kwargs,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
        batch_size=batch_size,
        address=args.address,
        format=args.format,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    print(f"omnizoo: {summary}", file=sys.stderr)
    return 1 if summary.errors else 0
