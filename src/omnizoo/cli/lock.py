"""``omnizoo lock NAME_OR_URL... -o omnizoo.lock``: pin weights like pip's hash-checking mode.

    omnizoo lock timm:resnet18.a1_in1k torchvision:resnet50 -o omnizoo.lock
    omnizoo lock onnx:resnet50-v1-7 --update -o omnizoo.lock     # add to an existing lock
    export OMNIZOO_LOCK=$PWD/omnizoo.lock

Each name is resolved (card -> URL(s); for a Hugging Face file, the commit its revision
points at and the sha256 the Hub announces), downloaded and verified where it is not cached,
and written with its URL(s), revision, sha256 and size. With OMNIZOO_LOCK set (or
``download_weights(..., lock=path)``), every download must match the lock and names it does
not list are refused. That is what makes a mirror of unhashed files (an air-gapped
HF_ENDPOINT) safe: the lock supplies the hash the mirror cannot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``lock`` command."""
    p = subparsers.add_parser(
        "lock",
        help="write a lock file pinning the sha256 of each model's weights",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", metavar="NAME_OR_URL", nargs="+", help="model name(s) or URL(s)")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default="omnizoo.lock",
        help="the lock file to write (default: omnizoo.lock)",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="keep the entries already in FILE and add (or replace) these",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..registry.downloads import lock_targets
    from ..weights.lockfile import WeightsLock, load_lock

    output = Path(args.output).expanduser()
    base = load_lock(output) if args.update and output.exists() else WeightsLock()
    entries = lock_targets(args.targets)
    lock = base.merged(entries)
    lock.save(output)
    for e in entries:
        at = f" at {e.revision[:12]}" if e.revision else ""
        print(f"{e.name or e.urls[0]}  sha256 {e.sha256}  {e.size} bytes  {e.source}{at}")
        if e.source == "unverified":
            print(
                f"omnizoo lock: warning: {e.name or e.urls[0]}: no hash was published for it; "
                "pinned on first use (fetched from its origin, never a mirror)",
                file=sys.stderr,
            )
    print(f"wrote {output} ({len(lock.entries)} file(s))")
    return 0
