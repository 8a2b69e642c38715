"""How long does the very first ``omnizoo list`` take on a fresh install?

    python benchmarks/bench_listing.py [--repeat 5] [--baseline-src ../main/src] [--full-build]

Every run is a fresh Python process with an empty ``OMNIZOO_HOME`` (a new temporary folder),
stdout thrown away, and the median of ``--repeat`` runs is printed:

* **omnizoo list (first run)**: ``python -m omnizoo.cli.main list`` as installed here. For the
  pinned library versions the prebuilt card indexes shipped in the package answer it.
* **timm.list_models()**: ``python -c "import timm; timm.list_models()"``, the peer: the
  cheapest way to ask timm alone what it has.
* **baseline (--baseline-src DIR)**: the same first ``omnizoo list`` with another checkout's
  ``src`` first on ``PYTHONPATH`` (e.g. main before the prebuilt indexes: it builds every
  index on the first call).
* **full build (--full-build)**: this checkout with ``OMNIZOO_CARD_CACHE=0``: every index built
  from the libraries, parameters and GFLOPs counted on the meta device: what the first run of
  a library version without a prebuilt index costs, once. Slow (minutes); one run.

The machine may be shared: medians, and the 1-minute load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(argv: list[str], pythonpath: str | None, extra_env: dict[str, str] | None = None) -> float:
    with tempfile.TemporaryDirectory(prefix="omnizoo-bench-home-") as home:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("OMNIZOO_") and k not in ("PYTHONPATH", "HF_ENDPOINT")
        }
        env["OMNIZOO_HOME"] = home
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        env.update(extra_env or {})
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, *argv],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def _median(label: str, runs: list[float]) -> float:
    med = statistics.median(runs)
    shown = ", ".join(f"{r:.2f}" for r in runs)
    print(f"{label:<40} median {med:7.2f} s   (runs: {shown})", flush=True)
    return med


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--full-build", action="store_true")
    args = parser.parse_args(argv)

    listing = ["-m", "omnizoo.cli.main", "list"]
    ours = str(SRC)
    print(
        f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    first = _median(
        "omnizoo list (first run, empty home)",
        [_run(listing, ours) for _ in range(args.repeat)],
    )
    peer = _median(
        "import timm; timm.list_models()",
        [_run(["-c", "import timm; timm.list_models()"], None) for _ in range(args.repeat)],
    )
    print(f"{'':<40} omnizoo is {peer / first:.1f}x faster than timm.list_models()")
    if args.baseline_src is not None:
        base = _median(
            f"baseline {args.baseline_src} (first run)",
            [_run(listing, str(args.baseline_src.resolve())) for _ in range(args.repeat)],
        )
        print(f"{'':<40} omnizoo is {base / first:.1f}x faster than the baseline")
    if args.full_build:
        _median(
            "full build (OMNIZOO_CARD_CACHE=0)",
            [_run(listing, ours, {"OMNIZOO_CARD_CACHE": "0"})],
        )
    print(f"load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
