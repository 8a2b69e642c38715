"""``omnizoo cache list | verify | remove | prune | info``: look after the weights cache.

omnizoo cache add FILE [--as NAME_OR_URL] [--sha256 HEX]
                                   add a file you already have (a copy from another machine,
                                   torch.hub's or Hugging Face's cache), verified as its
                                   download would be; without --as, the model whose weights
                                   file has this name
omnizoo cache info                 root, counts, total size, files per verification state
omnizoo cache list [--json]        every cached file with the names/URLs pointing at it and
                                   how it was verified (pinned, origin, prefix, unverified)
omnizoo cache verify               re-hash every file; exit 1 if any is corrupted
omnizoo cache remove TARGET...     by model name, URL, file name or sha256 (prefix)
omnizoo cache prune [--dry-run] [--grace SECONDS]
                                   delete partial downloads of dead processes, unreferenced
                                   files older than the grace period (default 3600 s, at
                                   least 60) and card indexes of library versions no longer
                                   installed; safe while downloads run; exit 1 if something
                                   could not be deleted (a read-only cache)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``cache`` command group."""
    p = subparsers.add_parser(
        "cache",
        help="inspect, verify and clean the weights cache",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    sub.required = True
    s = sub.add_parser("add", help="add a local copy of a weights file, verified")
    s.add_argument("file", metavar="FILE")
    s.add_argument(
        "--as",
        dest="target",
        metavar="NAME_OR_URL",
        default=None,
        help="the model name or URL the file is a copy of (default: found by its file name)",
    )
    s.add_argument("--sha256", default=None, metavar="HEX", help="the digest to check it against")
    s.set_defaults(func=_add)
    s = sub.add_parser("info", help="root, counts and total size")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_info)
    s = sub.add_parser("list", help="every cached file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_list)
    s = sub.add_parser("verify", help="re-hash every cached file (exit 1 on corruption)")
    s.set_defaults(func=_verify)
    s = sub.add_parser("remove", help="delete cached files by name, URL, file name or sha256")
    s.add_argument("targets", metavar="TARGET", nargs="+")
    s.set_defaults(func=_remove)
    s = sub.add_parser(
        "prune", help="delete partial downloads, unreferenced files and stale card indexes"
    )
    s.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    s.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep files modified less than this long ago (default 3600, at least 60)",
    )
    s.set_defaults(func=_prune)


def _cache() -> Any:
    from ..weights.download import get_cache

    return get_cache()


def _add(args: argparse.Namespace) -> int:
    from ..registry.downloads import add_to_cache

    fetched = add_to_cache(args.file, args.target, sha256=args.sha256)
    names = f" as {fetched.name}" if fetched.name else f" as {fetched.urls[0]}"
    print(f"{fetched.path}  ({fetched.verification}{names})")
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _info(args: argparse.Namespace) -> int:
    info = _cache().info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"root:     {info['root']}")
    print(f"files:    {info['blobs']} ({_human(info['total_bytes'])})")
    print(f"urls:     {info['refs']}")
    print(f"names:    {info['names']}")
    print(f"partial:  {info['partial']} ({_human(info['partial_bytes'])})")
    counts = info.get("verification") or {}
    print("verified: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in _states()))
    return 0


def _states() -> tuple[str, ...]:
    from ..weights.verification import STATES

    return STATES


def _list(args: argparse.Namespace) -> int:
    blobs = _cache().blobs_info()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "sha256": b.sha256,
                        "size": b.size,
                        "path": str(b.path),
                        "names": b.names,
                        "urls": b.urls,
                        "verification": b.verification,
                        "refs": [
                            {"url": u, "verification": v, "revision": r}
                            for u, v, r in zip(b.urls, b.verifications, b.revisions, strict=True)
                        ],
                    }
                    for b in blobs
                ],
                indent=1,
            )
        )
        return 0
    if not blobs:
        print("the weights cache is empty")
        return 0
    for b in blobs:
        label = ", ".join(b.names) or ", ".join(sorted(set(b.filenames))) or "(no ref)"
        print(f"{b.sha256[:12]}  {_human(b.size):>10}  {b.verification:<10}  {label}")
        for url, state, revision in zip(b.urls, b.verifications, b.revisions, strict=True):
            at = f", revision {revision[:12]}" if revision else ""
            print(f"{'':38}{url}  [{state}{at}]")
    return 0


def _verify(args: argparse.Namespace) -> int:
    cache = _cache()
    total = len(cache.blobs_info())
    bad = cache.verify()
    for info, actual in bad:
        label = ", ".join(info.names or info.urls) or "(no ref)"
        print(f"CORRUPTED {info.path}: expected sha256 {info.sha256}, got {actual} ({label})")
    print(f"verified {total} file(s): {total - len(bad)} ok, {len(bad)} corrupted")
    if bad:
        print(
            "remove them with `omnizoo cache remove SHA256` (the next use downloads them again)",
            file=sys.stderr,
        )
        return 1
    return 0


def _remove(args: argparse.Namespace) -> int:
    from ..errors import CacheError

    cache = _cache()
    missing = []
    for target in args.targets:
        shas = cache.find(target)
        if not shas and _looks_like_model_name(target):
            shas = _shas_for_name(cache, target)
        if not shas:
            missing.append(target)
            continue
        for sha in shas:
            urls = cache.remove_blob(sha)
            print(f"removed {sha[:12]} ({', '.join(urls) or 'no ref'})")
    if missing:
        raise CacheError("not in the weights cache: " + ", ".join(missing))
    return 0


_FILE_SUFFIXES = (
    ".pth",
    ".pt",
    ".bin",
    ".safetensors",
    ".onnx",
    ".npz",
    ".tar",
    ".pyth",
    ".torch",
    ".ckpt",
    ".json",
)


def _looks_like_model_name(target: str) -> bool:
    """Worth asking the registry (which may build its index) about this target?"""
    low = target.lower()
    if "://" in low or "/" in low or low.endswith(_FILE_SUFFIXES):
        return False
    return not (len(low) >= 6 and all(c in "0123456789abcdef" for c in low))


def _shas_for_name(cache: Any, name: str) -> list[str]:
    """A model name not recorded in a ref: resolve its card and look up its URLs."""
    try:
        from ..registry.registry import get_card

        card = get_card(name)
    except Exception:
        return []
    if card.weights is None:
        return []
    shas = set()
    for url in card.weights.urls:
        ref = cache.ref(url)
        if ref is not None:
            shas.add(ref["sha256"])
    if card.weights.sha256 and cache.blob_path(card.weights.sha256).exists():
        shas.add(card.weights.sha256)
    return sorted(shas)


def _prune(args: argparse.Namespace) -> int:
    from ..registry.index import stale_index_files

    report = _cache().prune(dry_run=args.dry_run, grace=args.grace)
    errors = report.pop("errors", [])
    # Card indexes of library versions or card schemas no longer installed (~1.4 MB for timm).
    report["index"] = []
    for path in stale_index_files():
        if not args.dry_run:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a read-only cache: reported, not fatal
                errors.append(f"{path}: {exc.strerror or exc}")
                continue
        report["index"].append(str(path))
    verb = "would delete" if args.dry_run else "deleted"
    for kind, paths in report.items():
        for path in paths:
            print(f"{verb} {kind}: {path}")
    print(f"{verb} {sum(len(p) for p in report.values())} item(s)")
    for line in errors:
        print(f"omnizoo: error: cannot delete {line}", file=sys.stderr)
    return 1 if errors else 0
