"""``omnizoo finetune MODEL DATA --out DIR``: fine-tune a model on a labelled image set.

    omnizoo finetune timm:resnet18.a1_in1k photos/ --out runs/r18
    omnizoo finetune resnet50 train/ --val val/ --out runs/r50 --epochs 20 --lr 3e-4
    omnizoo finetune timm:resnet18 labels.csv --out runs/r18 --resume
    torchrun --nproc-per-node 4 -m omnizoo finetune resnet50 photos/ --out runs/ddp
    omnizoo finetune resnet50 /shared/photos --out /shared/runs/r50 --engine ray --num-workers 8

DATA is an ImageFolder tree (one folder per class) or a CSV/JSONL of path,label; without
--val, --val-fraction of it is held out (per class, with --seed). The best epoch is saved in
DIR/best with the data set's class names: `omnizoo predict DIR/best img.jpg`, `omnizoo export
DIR/best model.onnx`, `create_model("DIR/best")`. DIR also holds last.pt (resume with
--resume, after a crash or SIGTERM), metrics.jsonl, bad_images.jsonl and curves.png.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]

_KNOBS = (
    ("epochs", int, "epochs in all (default 10)"),
    ("batch_size", int, "images per step and process (default 32)"),
    ("lr", float, "learning rate of the whole-network phase (default 5e-4)"),
    ("head_lr", float, "learning rate of the head-only epochs (default 10x --lr)"),
    ("weight_decay", float, "AdamW weight decay (default 0.05)"),
    ("layer_decay", float, "layer-wise lr decay in (0, 1]; 1 for none (default 0.75)"),
    ("head_epochs", int, "epochs training the new head alone first (default 1)"),
    ("warmup_epochs", float, "linear warm-up epochs before the cosine (default 1)"),
    ("label_smoothing", float, "default 0.1"),
    ("accum_steps", int, "micro-batches per optimizer step (default 1)"),
    ("clip_grad", float, "clip the gradient norm to this (default: no clipping)"),
    ("patience", int, "stop after this many epochs without a better val top-1"),
    ("seed", int, "data order, split, augmentation and head init (default 0)"),
    ("image_size", int, "train and evaluate at this size instead of the card's"),
    ("min_crop", float, "smallest area fraction of RandomResizedCrop (default 0.08)"),
    ("hflip", float, "horizontal flip probability (default 0.5; 0 for text/digits)"),
    ("val_fraction", float, "held out of DATA when --val is not given (default 0.1)"),
    ("ema_decay", float, "EMA decay with --ema (default 0.999)"),
)


def register(subparsers: Any) -> None:
    """Add the ``finetune`` command."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on your labelled images (one machine, torchrun or Ray)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model name, e.g. timm:resnet18.a1_in1k")
    p.add_argument("data", metavar="DATA", help="ImageFolder tree or CSV/JSONL of path,label")
    p.add_argument("--out", required=True, metavar="DIR", help="the run folder (new or empty)")
    p.add_argument("--val", metavar="DIR", default=None, help="validation set (same layouts)")
    recipe = p.add_argument_group("recipe (every knob of omnizoo.finetune.Recipe)")
    for name, kind, text in _KNOBS:
        recipe.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
    recipe.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default=None,
        help="auto: bf16 on CUDA (fp16 without bf16) and on CPUs with native bf16, else fp32",
    )
    recipe.add_argument("--ema", action="store_true", default=None, help="keep and save an EMA")
    recipe.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep BatchNorm statistics as loaded (default: yes for trained weights, no for "
        "--random-init)",
    )
    recipe.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: on CUDA only",
    )
    p.add_argument("--random-init", action="store_true", help="start from random weights")
    p.add_argument(
        "--checkpoint", metavar="PATH", default=None, help="start from this local weights file"
    )
    p.add_argument("--workers", type=int, default=0, help="image-loading processes (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    ray = p.add_argument_group("Ray Train (--engine ray)")
    ray.add_argument("--engine", choices=("local", "ray"), default="local")
    ray.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    ray.add_argument("--num-workers", type=int, default=2, help="Ray Train workers (default 2)")
    ray.add_argument("--use-gpu", action="store_true", help="one GPU per Ray worker")
    ray.add_argument("--storage-path", default=None, help="Ray checkpoint storage (OUT/ray)")
    p.set_defaults(func=run)


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    names = [k[0] for k in _KNOBS] + ["precision", "ema", "freeze_bn", "channels_last"]
    knobs = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if knobs.get("layer_decay") == 1.0:
        knobs["layer_decay"] = None
    return knobs


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 when done (or stopped early), 143 when stopped by SIGTERM."""
    common: dict[str, Any] = {
        "val": args.val,
        "pretrained": not args.random_init,
        "checkpoint_path": args.checkpoint,
        "workers": args.workers,
        "resume": args.resume,
        "progress": not args.quiet,
        **_knobs(args),
    }
    if args.engine == "ray":
        from ..finetune.ray_train import fit_ray

        result = fit_ray(
            args.model,
            args.data,
            out=args.out,
            num_workers=args.num_workers,
            address=args.address,
            use_gpu=args.use_gpu,
            storage_path=args.storage_path,
            **common,
        )
    else:
        from ..finetune.training import fit

        result = fit(args.model, args.data, out=args.out, device=args.device, **common)
    if result.best is None:  # a process other than rank 0 under torchrun
        return 0 if result.status != "interrupted" else 143
    if args.json:
        doc = {
            "out": str(result.out),
            "best": str(result.best),
            "best_top1": result.best_top1,
            "best_epoch": result.best_epoch,
            "status": result.status,
            "classes": list(result.classes),
        }
        print(json.dumps(doc, indent=2))
    elif result.status == "interrupted":
        print(f"stopped; checkpoint saved: continue with --resume --out {result.out}")
    else:
        print(
            f"best: epoch {result.best_epoch}, val top-1 {result.best_top1:.2f}% -> "
            f"{result.best} ({result.status})"
        )
    return 143 if result.status == "interrupted" else 0
