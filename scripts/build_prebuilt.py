"""Build the package data for an instant first run: the prebuilt card index of every source
for the pinned library versions, and the pinned ONNX zoo manifest.

    PYTHONPATH=src python scripts/build_prebuilt.py \
        --manifest ../shared/reference/onnx_hub_manifest.json

* ``src/omnizoo/data/onnx_hub_manifest.json.gz``: ONNX_HUB_MANIFEST.json of onnx/models at
  ddbbd127, checked against ``MANIFEST_SHA256`` before it is written (gzip, no timestamp).
* ``src/omnizoo/data/prebuilt/<index key>.json.gz``: exactly what
  ``omnizoo.registry.index_build.build_payload(..., count=True)`` gives for each source (cards
  from the installed libraries, metrics from the shipped tables, parameter counts and GFLOPs
  counted on the meta device where no source publishes them: every one, now), built in an
  empty OMNIZOO_HOME. The key names the library and torch versions, so another version never
  reads these files as its index: it builds its own without counting, and takes from these
  files the counted figures of every architecture, head and input size they share
  (``omnizoo.registry.figures``). ``tests/test_prebuilt.py`` compares them with a fresh build.

Run it after changing card code (bump INDEX_SCHEMA) or the pinned versions, then commit the
files. It refuses library versions other than the pinned ones unless ``--any-version``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PINNED = {
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "timm": "1.0.31",
    "pretrainedmodels": "0.7.4",
    "efficientnet_pytorch": "0.7.1",
}


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, help="a copy of ONNX_HUB_MANIFEST.json")
    parser.add_argument("--sources", nargs="*", default=None, help="default: every source")
    parser.add_argument("--any-version", action="store_true", help="skip the version check")
    args = parser.parse_args(argv)

    os.environ["OMNIZOO_HOME"] = tempfile.mkdtemp(prefix="omnizoo-prebuilt-")
    os.environ["OMNIZOO_OFFLINE"] = "1"
    os.environ.pop("OMNIZOO_ONNX_MANIFEST_URL", None)

    import importlib.metadata

    from omnizoo import settings
    from omnizoo.registry.adapters import get_adapter
    from omnizoo.registry.index import prebuilt_path
    from omnizoo.registry.index_build import build_payload
    from omnizoo.sources.onnx import manifest
    from omnizoo.sources.package_data import PREBUILT_DIR
    from omnizoo.sources.table import source_names

    settings.reset()
    wrong = {
        dist: importlib.metadata.version(dist)
        for dist, want in PINNED.items()
        if importlib.metadata.version(dist).split("+")[0] != want
    }
    if wrong and not args.any_version:
        print(f"not the pinned versions {PINNED}: {wrong}", file=sys.stderr)
        return 2

    if args.manifest is not None:
        raw = args.manifest.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != manifest.MANIFEST_SHA256:
            print(f"{args.manifest}: sha256 {digest} is not the pinned manifest", file=sys.stderr)
            return 2
        manifest.SHIPPED.write_bytes(_gzip(raw))
        manifest._shipped.clear()
        print(f"{manifest.SHIPPED}: {manifest.SHIPPED.stat().st_size} bytes", file=sys.stderr)
    if manifest.shipped_manifest() is None:
        print("no verified shipped manifest; pass --manifest", file=sys.stderr)
        return 2

    PREBUILT_DIR.mkdir(parents=True, exist_ok=True)
    for source in args.sources or source_names():
        adapter = get_adapter(source)
        started = time.monotonic()
        payload = build_payload(adapter, stream=sys.stderr, count=True)
        path = prebuilt_path(payload["key"])
        for old in PREBUILT_DIR.glob(f"{source}-*.json.gz"):
            if old != path:
                old.unlink()
        raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        path.write_bytes(_gzip(raw))
        print(
            f"{path.name}: {len(payload['cards'])} cards, {len(raw)} bytes JSON, "
            f"{path.stat().st_size} bytes gzip, {time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
