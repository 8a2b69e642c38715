"""Benchmark of the weights downloader against a loopback HTTP server.

    .venv/bin/python benchmarks/bench_download.py [--size-mb 300] [--repeat 3] [--procs 8]

Prints, for one generated file (random bytes, in a temp dir) served by the test server
(tests/weightserver.py, run in its own process, sendfile for the body):

1. throughput of ``download_weights`` (stream + sha256 + verify + atomic rename) as a ratio to
   (a) a plain urllib download to a file with no hashing (goal >= 0.75) and
   (b) ``torch.hub.download_url_to_file`` with its hash_prefix check (goal >= 1.2);
2. bytes transferred when the connection is cut at 50% and the download resumes (goal: ~half);
3. body downloads seen by the server when N processes ask for the file at once (goal: 1).

``--repeat`` interleaved rounds (plain, torch.hub, omnizoo: each round under the same
machine load); best and median are printed. Every omnizoo run starts from an empty cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback server lives with the tests


def _start_server(directory: Path, **faults: object) -> tuple[mp.Process, str]:
    from weightserver import serve_forever

    port_file = directory.parent / f"port-{time.monotonic_ns()}"
    proc = mp.get_context("spawn").Process(
        target=serve_forever, args=(str(directory), str(port_file)), kwargs=faults, daemon=True
    )
    proc.start()
    while not port_file.exists():
        time.sleep(0.02)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def _stats(base: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(base + "/__stats__") as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


_CPU: dict[str, list[float]] = {}


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn, label: str = "") -> float:  # type: ignore[no-untyped-def]
    """Wall seconds of fn(); its client CPU seconds (all threads) go to _CPU[label]."""
    c0 = _cpu()
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    _CPU.setdefault(label, []).append(_cpu() - c0)
    return elapsed


def _urllib_plain(url: str, dst: Path) -> None:
    with urllib.request.urlopen(url) as r, open(dst, "wb") as f:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            f.write(chunk)


def _omnizoo(url: str, home: Path) -> Path:
    from omnizoo import download_weights, settings

    with settings.override(home=home, progress=False):
        return download_weights(url)


def _concurrent_child(url: str, home: str) -> None:
    os.environ["OMNIZOO_HOME"] = home
    os.environ["OMNIZOO_PROGRESS"] = "0"
    from omnizoo import download_weights

    download_weights(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--procs", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="omnizoo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        served = tmp / "served"
        served.mkdir()
        size = args.size_mb * 1_000_000
        data = os.urandom(size)
        digest = hashlib.sha256(data).hexdigest()
        name = f"bench-{digest[:8]}.pth"
        (served / name).write_bytes(data)
        del data
        print(
            f"file: {size / 1e6:.0f} MB, sha256 {digest[:16]}..., cpus: {os.cpu_count()}, "
            f"load average: {os.getloadavg()[0]:.1f}"
        )

        proc, base = _start_server(served)
        url = f"{base}/{name}"
        try:
            dst = tmp / "plain.bin"
            home = tmp / "home"
            import torch.hub

            runs: dict[str, list[float]] = {"plain": [], "torch": [], "omnizoo": []}
            # Interleaved rounds: each round times the three under the same machine load.
            for _ in range(args.repeat):
                runs["plain"].append(_timed(lambda: _urllib_plain(url, dst), "plain"))
                dst.unlink()
                runs["torch"].append(
                    _timed(
                        lambda: torch.hub.download_url_to_file(
                            url, str(dst), hash_prefix=digest[:8], progress=False
                        ),
                        "torch",
                    )
                )
                dst.unlink()
                shutil.rmtree(home, ignore_errors=True)
                runs["omnizoo"].append(_timed(lambda: _omnizoo(url, home), "omnizoo"))
            for label, key in (
                ("urllib plain (no hash)", "plain"),
                ("torch.hub.download_url_to_file", "torch"),
                ("omnizoo download_weights", "omnizoo"),
            ):
                best = min(runs[key])
                print(
                    f"{label:32s} best {best:6.3f} s ({size / best / 1e6:5.0f} MB/s), "
                    f"median {statistics.median(runs[key]):6.3f} s, "
                    f"client CPU median {statistics.median(_CPU[key]):5.3f} s"
                )
            for other, goal in (("plain", 0.75), ("torch", 1.2)):
                ratios = [o / z for o, z in zip(runs[other], runs["omnizoo"], strict=True)]
                print(
                    f"ratio omnizoo/{other} throughput: best-of-each "
                    f"{min(runs[other]) / min(runs['omnizoo']):.2f}, median per round "
                    f"{statistics.median(ratios):.2f}  (goal >= {goal})"
                )
        finally:
            proc.terminate()

        # Resume after a cut at 50%.
        proc, base = _start_server(served, cut_at=size // 2, cut_times=1)
        url = f"{base}/{name}"
        try:
            from omnizoo import settings

            with settings.override(backoff=0.05):
                _omnizoo(url, tmp / "home-resume")
            st = _stats(base)["/" + name]
            print(
                f"resume after a cut at 50%: {st['bytes_sent'] / 1e6:.0f} MB sent for a "
                f"{size / 1e6:.0f} MB file ({st['bytes_sent'] / size:.2f}x; "
                f"{st['bodies']} full + {st['range_requests']} range request(s)); "
                f"after the cut: {(st['bytes_sent'] - size // 2) / size:.2f} of the file "
                "(goal: about half)"
            )
        finally:
            proc.terminate()

        # N processes at once.
        proc, base = _start_server(served)
        url = f"{base}/{name}"
        try:
            home = tmp / "home-conc"
            code = (
                "import sys; sys.path.insert(0, sys.argv[3]); "
                "from bench_download import _concurrent_child as c; c(sys.argv[1], sys.argv[2])"
            )
            t0 = time.perf_counter()
            children = [
                subprocess.Popen(
                    [sys.executable, "-c", code, url, str(home), str(ROOT / "benchmarks")]
                )
                for _ in range(args.procs)
            ]
            rcs = [c.wait() for c in children]
            elapsed = time.perf_counter() - t0
            st = _stats(base)["/" + name]
            print(
                f"{args.procs} concurrent processes: exit codes {rcs}, body downloads seen by the "
                f"server: {st['bodies']} (goal: 1), {elapsed:.2f} s"
            )
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
