"""How long does the very first ``omnizoo list`` take on a fresh install?

    python benchmarks/bench_listing.py [--repeat 5] [--baseline-src ../old/src] [--full-build]

Every run is a fresh Python process with an empty ``OMNIZOO_HOME`` (a new temporary folder),
stdout and stderr thrown away; the runs of the compared commands alternate (so a change in the
machine's load falls on both), and the median of ``--repeat`` runs is printed with the CPU
seconds (user + system) of the median run:

* **omnizoo list (first run)**: ``python -m omnizoo.cli.main list`` as installed here. For the
  pinned library versions the prebuilt card indexes shipped in the package answer it.
* **timm.list_models()**: ``python -c "import timm; timm.list_models()"``, the peer: the
  cheapest way to ask timm alone what it has.
* **baseline (--baseline-src DIR)**: the same first ``omnizoo list`` with another checkout's
  ``src`` first on ``PYTHONPATH``.

``--full-build`` adds what a user whose library versions omnizoo ships no index for gets:

* **another timm**: the first ``omnizoo list`` with the timm source reporting another version
  than the installed (pinned) one, so that the shipped timm index does not apply: the timm
  index is built from the library (parameters and GFLOPs reused from the shipped data where
  the architecture, head and input size match, the rest left to count when asked), the other
  sources come from their shipped indexes. Compared with ``timm.list_models()``: the goal is
  a ratio of at most 1.0. With ``--baseline-src`` the baseline checkout runs it too (before
  lazy metrics: every figure counted up front; one run, it takes minutes).
* **every index built** (``OMNIZOO_CARD_CACHE=0``): no index read from disk or the package,
  every source's built in the process.

The machine may be shared: the load averages are printed before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LISTING = ["-m", "omnizoo.cli.main", "list"]
PEER = ["-c", "import timm; timm.list_models()"]
# The timm source says it is another version: its shipped index is not this version's.
ANOTHER_TIMM = [
    "-c",
    "import sys\n"
    "from omnizoo.sources.timm.adapter import TimmSource\n"
    "_version = TimmSource.version\n"
    "TimmSource.version = lambda self: _version(self) + '.post999'\n"
    "from omnizoo.cli.main import main\n"
    "sys.exit(main(['list']))\n",
]

Run = tuple[float, float]  # (wall seconds, CPU seconds)


def _run(argv: list[str], pythonpath: str | None, extra_env: dict[str, str] | None = None) -> Run:
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
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, *argv],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return wall, cpu


def _median(label: str, runs: list[Run]) -> float:
    walls = [w for w, _ in runs]
    med = statistics.median(walls)
    cpu = statistics.median(c for _, c in runs)
    shown = ", ".join(f"{w:.2f}" for w in walls)
    print(f"{label:<44} median {med:7.2f} s  cpu {cpu:6.2f} s  (runs: {shown})", flush=True)
    return med


def _alternate(
    commands: list[tuple[list[str], str | None, dict[str, str]]], repeat: int
) -> list[list[Run]]:
    """Each command ``repeat`` times, in turn (A B A B ...)."""
    runs: list[list[Run]] = [[] for _ in commands]
    for _ in range(repeat):
        for i, (argv, path, env) in enumerate(commands):
            runs[i].append(_run(argv, path, env))
    return runs


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--full-build", action="store_true")
    args = parser.parse_args(argv)

    ours = str(SRC)
    base = str(args.baseline_src.resolve()) if args.baseline_src is not None else None
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {_load()}",
        flush=True,
    )
    first_runs, peer_runs = _alternate([(LISTING, ours, {}), (PEER, None, {})], args.repeat)
    first = _median("omnizoo list (first run, empty home)", first_runs)
    peer = _median("import timm; timm.list_models()", peer_runs)
    print(f"{'':<44} omnizoo is {peer / first:.1f}x faster than timm.list_models()")
    if base is not None:
        old = _median(
            f"baseline {args.baseline_src} (first run)",
            [_run(LISTING, base) for _ in range(args.repeat)],
        )
        print(f"{'':<44} omnizoo is {old / first:.1f}x faster than the baseline")
    if args.full_build:
        print(f"load average {_load()}", flush=True)
        built_runs, peer_runs = _alternate(
            [(ANOTHER_TIMM, ours, {}), (PEER, None, {})], args.repeat
        )
        built = _median("first list, another timm (index built)", built_runs)
        peer = _median("import timm; timm.list_models()", peer_runs)
        print(
            f"{'':<44} ratio {built / peer:.2f} (first list / timm.list_models(); goal <= 1.0)",
            flush=True,
        )
        every = _median(
            "first list, every index built (CARD_CACHE=0)",
            [_run(LISTING, ours, {"OMNIZOO_CARD_CACHE": "0"}) for _ in range(min(args.repeat, 3))],
        )
        print(f"{'':<44} ratio {every / peer:.2f} (against timm.list_models())", flush=True)
        if base is not None:
            old = _median("baseline, another timm (one run)", [_run(ANOTHER_TIMM, base)])
            print(f"{'':<44} ratio {old / peer:.2f}; this checkout is {old / built:.1f}x faster")
    print(f"load average now {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
