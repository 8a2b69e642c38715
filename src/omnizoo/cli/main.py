"""The ``omnizoo`` command line: a thin shell over the public API.

Each command group lives in its own module of this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func(args) -> int``.

    omnizoo list 'resnet*' --source timm --pretrained
    omnizoo info resnet50
    omnizoo download torchvision:resnet50.IMAGENET1K_V2
    omnizoo lock timm:resnet18.a1_in1k -o omnizoo.lock
    omnizoo predict resnet50 cat.jpg --topk 5 --json
    omnizoo export resnet50 resnet50.onnx
    omnizoo cache list | verify | remove | prune | info
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import OmnizooError

# Command-group modules, in the order their commands appear in --help.
COMMAND_MODULES = ("models", "download", "lock", "cache", "predict", "export")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command group registered)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="omnizoo",
        description="Pretrained image models from torchvision, timm, Cadene, EfficientNet and "
        "the ONNX zoo: one registry, verified weights, exact preprocessing.",
    )
    parser.add_argument("--version", action="version", version=f"omnizoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``omnizoo`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OmnizooError as exc:
        # Expected failures: one clear line, no traceback.
        print(f"omnizoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `omnizoo list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
