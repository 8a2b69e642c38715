"""``omnizoo download NAME_OR_URL``: fetch verified weights into the cache; print the path.

    omnizoo download torchvision:resnet50.IMAGENET1K_V2
    omnizoo download https://example.org/models/resnet18-f37072fd.pth
    omnizoo download https://example.org/model.onnx --sha256 <64 hex digits>

The file is verified (full sha256 when known or given, else the hash prefix in its file
name, plus size and a content sniff) before it enters the cache; a cached file is served
without a download. Copy OMNIZOO_HOME to an offline machine to use it there.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``download`` command."""
    p = subparsers.add_parser(
        "download",
        help="download and verify a model's weights (or any URL) into the cache",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="NAME_OR_URL", nargs="+", help="model name(s) or URL(s)")
    p.add_argument(
        "--sha256",
        metavar="HEX",
        default=None,
        help="expected full sha256 of the file (one target only)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError
    from ..registry.downloads import download_weights

    if args.sha256 and len(args.target) > 1:
        raise ConfigurationError("--sha256 applies to a single NAME_OR_URL")
    for target in args.target:
        print(download_weights(target, sha256=args.sha256), flush=True)
    return 0
