"""How long does a pretrained ``create_model`` take, against timm, torchvision and the floor?

    python benchmarks/bench_create.py [--repeat 3] [--models resnet50,vit_large_patch16_224]
    python benchmarks/bench_create.py --overhead-only [--repeat 9]   # the fixed overhead alone

Every measurement runs in a fresh Python process (torch/timm/torchvision already imported, so
the figure is the model creation itself) and the median of ``--repeat`` runs is printed.

Weights: real weights cannot be downloaded here, so the files are generated from random init
(same shapes and key names as the real ones) into a private directory, then

* **timm** tags (Hugging Face hosted): the file is served by a loopback HTTP server standing
  in for huggingface.co (``HF_ENDPOINT``); one warm-up ``omnizoo.download_weights(name,
  sha256=...)`` puts it in omnizoo's verified cache, pinned by its sha256 (the loopback server
  is no Hub origin that could announce it), so the timed ``create_model(name, pretrained=True)``
  runs the real path on a warm cache. timm gets the same file through
  ``pretrained_cfg_overlay=dict(file=...)``.
* **torchvision** weights carry a sha256 prefix in their file name that random bytes cannot
  match, so they cannot enter the verified cache honestly; omnizoo loads the same local file
  with ``checkpoint_path=`` (the same build and load code, minus the cache lookup), against
  ``torchvision.models.get_model(weights=None)`` + ``load_state_dict(torch.load(f))``.
* **floor**: the least work possible: build the architecture on the meta device
  (``with torch.device("meta")``, the in-place init ops on meta tensors returning at once:
  the same ops omnizoo skips, ``omnizoo.loading.meta.SKIPPED_ON_META``), read the file
  (safetensors / ``torch.load(mmap=True)``) and ``load_state_dict(assign=True)``. It skips
  what a correct model needs (non-persistent buffers are left on meta), so it is a lower
  bound, not a usable model.

``--meta`` rows time ``create_model(name, device="meta")`` (the architecture only) against
``timm.create_model(arch, device="meta")`` and torchvision's builder under
``torch.device("meta")``.

**Fixed overhead** (the lines after the tables, and ``--overhead-only``): what omnizoo costs
before any model code runs, isolated from torch and timm. For each name of the table, fresh
processes (warm home) time ``import omnizoo`` + the first ``get_card(name)`` from inside
(``perf_counter`` from before the import: interpreter start-up excluded) and from outside
(the process's wall time minus that of ``python -c pass``, the "nothing" of ``-X importtime``);
``--importtime`` adds the slowest imports of one such process. A last line times ``import
omnizoo``, a warm ``list_models()`` and ``get_card()``, and checks that it imported neither
torch nor timm. The load average is printed at the start and end of every run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# (label, omnizoo name, timm arch or torchvision builder, kind)
MODELS = {
    "resnet50": [
        ("timm:resnet50.a1_in1k", "resnet50", "timm"),
        ("torchvision:resnet50.IMAGENET1K_V2", "resnet50", "torchvision"),
    ],
    "convnext_base": [
        ("timm:convnext_base.fb_in1k", "convnext_base", "timm"),
        ("torchvision:convnext_base.IMAGENET1K_V1", "convnext_base", "torchvision"),
    ],
    "vit_base_patch16_224": [
        ("timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", "vit_base_patch16_224", "timm"),
        ("torchvision:vit_b_16.IMAGENET1K_V1", "vit_b_16", "torchvision"),
    ],
    "vit_large_patch16_224": [
        ("timm:vit_large_patch16_224.augreg_in21k_ft_in1k", "vit_large_patch16_224", "timm"),
        ("torchvision:vit_l_16.IMAGENET1K_V1", "vit_l_16", "torchvision"),
    ],
}

PRELUDE = "import time, torch, timm, torchvision, omnizoo\ntorch.set_num_threads(4)\n"
# The floor also skips parameter init on meta tensors (in-place ops on meta go through slow
# Python reference implementations: clamp_ costs ms a call), the same ops omnizoo skips, so
# that it is the least work possible.
FLOOR_PRELUDE = """
from omnizoo.loading.meta import SKIPPED_ON_META
def _skip(orig):
    return lambda self, *a, **k: self if self.is_meta else orig(self, *a, **k)
for _op in SKIPPED_ON_META:
    if hasattr(torch.Tensor, _op):
        setattr(torch.Tensor, _op, _skip(getattr(torch.Tensor, _op)))
"""

SNIPPETS = {
    "omnizoo": """
t = time.perf_counter()
m = omnizoo.create_model(NAME, pretrained=True)
dt = time.perf_counter() - t
""",
    "omnizoo_ckpt": """
t = time.perf_counter()
m = omnizoo.create_model(NAME, checkpoint_path=FILE)
dt = time.perf_counter() - t
""",
    "timm": """
t = time.perf_counter()
m = timm.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=dict(file=FILE))
dt = time.perf_counter() - t
""",
    "torchvision": """
t = time.perf_counter()
m = torchvision.models.get_model(ARCH, weights=None)
m.load_state_dict(torch.load(FILE, map_location="cpu", weights_only=True))
dt = time.perf_counter() - t
""",
    "omnizoo_meta": """
t = time.perf_counter()
m = omnizoo.create_model(NAME, device="meta")
dt = time.perf_counter() - t
""",
    "timm_meta": """
t = time.perf_counter()
m = timm.create_model(ARCH, device="meta")
dt = time.perf_counter() - t
""",
    "torchvision_meta": """
t = time.perf_counter()
with torch.device("meta"):
    m = torchvision.models.get_model(ARCH, weights=None)
dt = time.perf_counter() - t
""",
    "floor_timm": """
from safetensors.torch import load_file
t = time.perf_counter()
with torch.device("meta"):
    m = timm.create_model(ARCH)
m.load_state_dict(load_file(FILE), assign=True, strict=False)
dt = time.perf_counter() - t
""",
    "floor_torchvision": """
t = time.perf_counter()
with torch.device("meta"):
    m = torchvision.models.get_model(ARCH, weights=None)
m.load_state_dict(torch.load(FILE, map_location="cpu", weights_only=True, mmap=True),
                  assign=True, strict=False)
dt = time.perf_counter() - t
""",
}


def run_snippet(kind: str, env: dict[str, str], **values: str) -> float:
    code = PRELUDE + (FLOOR_PRELUDE if kind.startswith("floor") else "")
    code += "".join(f"{k} = {v!r}\n" for k, v in values.items())
    code += SNIPPETS[kind] + "print('DT', dt)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {values}: {out.stderr[-2000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("DT ")][-1]
    return float(line.split()[1])


def median(kind: str, env: dict[str, str], repeat: int, **values: str) -> float:
    return statistics.median(run_snippet(kind, env, **values) for _ in range(repeat))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def make_files(work: Path, models: list[str]) -> dict[str, Path]:
    """Random-init weight files: timm ones under work/hf/<hub id>/resolve/main/, torchvision
    ones as plain .pth."""
    import timm
    import torch
    import torchvision
    from safetensors.torch import save_file

    from omnizoo import get_card

    files: dict[str, Path] = {}
    for label in models:
        for name, arch, kind in MODELS[label]:
            card = get_card(name)
            if kind == "timm":
                hub = card.weights.hf_hub_id if card.weights is not None else None
                assert hub is not None, f"{name} has no Hugging Face weights"
                f = work / "hf" / hub / "resolve" / "main" / "model.safetensors"
                if not f.exists():
                    f.parent.mkdir(parents=True, exist_ok=True)
                    with torch.device("meta"):
                        skel = timm.create_model(arch)
                    sd = {
                        k: torch.randn(v.shape).to(v.dtype)
                        if v.is_floating_point()
                        else torch.zeros(v.shape, dtype=v.dtype)
                        for k, v in skel.state_dict().items()
                    }
                    save_file(sd, str(f))
            else:
                f = work / "tv" / f"{arch}.pth"
                if not f.exists():
                    f.parent.mkdir(parents=True, exist_ok=True)
                    with torch.device("meta"):
                        skel = torchvision.models.get_model(arch, weights=None)
                    sd = {
                        k: torch.randn(v.shape).to(v.dtype)
                        if v.is_floating_point()
                        else torch.zeros(v.shape, dtype=v.dtype)
                        for k, v in skel.state_dict().items()
                    }
                    torch.save(sd, f)
            files[name] = f
    return files


OVERHEAD = """
import sys, time
t0 = time.perf_counter(); c0 = time.process_time()
import omnizoo
t1 = time.perf_counter()
card = omnizoo.get_card(NAME)
t2 = time.perf_counter(); c2 = time.process_time()
heavy = [m for m in ("torch", "timm", "torchvision", "numpy") if m in sys.modules]
print("OH", t1 - t0, t2 - t1, c2 - c0, ",".join(heavy) or "-", card.name)
"""


def _wall(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t, out.stdout


@dataclasses.dataclass
class Overhead:
    """One name's fixed overhead, ms (medians over fresh processes)."""

    name: str
    import_ms: float  # import omnizoo
    get_card_ms: float  # the first get_card(name) after it
    inside_ms: float  # both, timed inside the process
    inside_min_ms: float
    cpu_ms: float  # CPU time of both (less sensitive to other processes)
    outside_ms: float  # the process's wall time minus that of python -c pass
    nothing_ms: float  # python -c pass
    heavy: str  # heavy modules the process imported


def overhead(names: list[str], env: dict[str, str], repeat: int) -> list[Overhead]:
    """The fixed overhead of ``import omnizoo`` + the first ``get_card(name)``, per name:
    medians over ``repeat`` fresh processes, interleaved with ``python -c pass`` runs."""
    for name in names:  # warm: the home's index files exist, the .pyc files are written
        _wall([sys.executable, "-c", f"NAME = {name!r}\n" + OVERHEAD], env)
    rows = []
    med = statistics.median
    for name in names:
        nothing, imp, card, cpu, outside = [], [], [], [], []
        heavy = ""
        for _ in range(repeat):
            nothing.append(_wall([sys.executable, "-c", "pass"], env)[0])
            wall, out = _wall([sys.executable, "-c", f"NAME = {name!r}\n" + OVERHEAD], env)
            fields = [ln for ln in out.splitlines() if ln.startswith("OH ")][-1].split()
            imp.append(float(fields[1]))
            card.append(float(fields[2]))
            cpu.append(float(fields[3]))
            heavy = fields[4]
            outside.append(wall)
        both = [a + b for a, b in zip(imp, card, strict=True)]
        rows.append(
            Overhead(
                name,
                1e3 * med(imp),
                1e3 * med(card),
                1e3 * med(both),
                1e3 * min(both),
                1e3 * med(cpu),
                1e3 * (med(outside) - med(nothing)),
                1e3 * med(nothing),
                heavy,
            )
        )
    return rows


def print_overhead(rows: list[Overhead]) -> None:
    print(
        f"{'fixed overhead: import omnizoo + get_card(name)':<56}{'import':>8}{'card':>8}"
        f"{'total':>8}{'min':>8}{'cpu':>8}{'-pass':>8}  ms (median), heavy modules"
    )
    for r in rows:
        print(
            f"{r.name:<56}{r.import_ms:>8.1f}{r.get_card_ms:>8.1f}{r.inside_ms:>8.1f}"
            f"{r.inside_min_ms:>8.1f}{r.cpu_ms:>8.1f}{r.outside_ms:>8.1f}  {r.heavy}",
            flush=True,
        )
    if rows:
        print(f"(python -c pass: {rows[0].nothing_ms:.1f} ms)", flush=True)


def importtime(name: str, env: dict[str, str], top: int = 15) -> None:
    """The slowest imports (cumulative) of one fresh ``import omnizoo; get_card(name)``."""
    code = f"import omnizoo; omnizoo.get_card({name!r})"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env
    )
    rows = []
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), int(parts[0]), parts[2].rstrip()))
    print(f"-X importtime, {name}: slowest cumulative imports (us: cumulative, self)")
    for cum, own, mod in sorted(rows, reverse=True)[:top]:
        print(f"  {cum:>8} {own:>8} {mod}")


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--work", default=None, help="directory for the generated files and cache")
    ap.add_argument("--meta", action="store_true", help='also time device="meta" builds')
    ap.add_argument(
        "--overhead-only", action="store_true", help="only the fixed-overhead lines (no weights)"
    )
    ap.add_argument(
        "--importtime", action="store_true", help="also list the slowest imports of one process"
    )
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    work = Path(args.work or tempfile.mkdtemp(prefix="omnizoo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNIZOO_", "HF_"))}
    # An installed package has its bytecode compiled; without this, a shell that sets
    # PYTHONDONTWRITEBYTECODE recompiles every edited module in every timed process (tens of ms)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["OMNIZOO_HOME"] = str(work / "home")
    env["OMNIZOO_PROGRESS"] = "0"
    os.environ.update({"OMNIZOO_HOME": env["OMNIZOO_HOME"], "OMNIZOO_PROGRESS": "0"})
    print(f"# start: {load_average()}", flush=True)
    names = [name for label in models for name, _, _ in MODELS[label]]
    if args.overhead_only:
        print_overhead(overhead(names, env, max(3, args.repeat)))
        if args.importtime:
            importtime(names[0], env)
        print(f"# end: {load_average()}", flush=True)
        return 0
    files = make_files(work, models)
    rows: list[tuple[str, float, float, float | None]] = []
    with serve(work / "hf") as base:
        env["HF_ENDPOINT"] = base
        os.environ["HF_ENDPOINT"] = base
        from omnizoo import download_weights, settings

        settings.reset()
        cached = {}
        for label in models:
            name = MODELS[label][0][0]
            digest = hashlib.sha256(files[name].read_bytes()).hexdigest()
            # warm-up: fetch + verify once, pinned by sha256
            cached[name] = str(download_weights(name, sha256=digest))
        print(
            f"# {sys.platform}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"median of {args.repeat} fresh processes, seconds",
            flush=True,
        )
        print(f"{'model':<48}{'omnizoo':>9}{'upstream':>10}{'floor':>8}{'/floor':>8}{'speedup':>9}")
        for label in models:
            (tname, tarch, _), (vname, varch, _) = MODELS[label]
            ours = median("omnizoo", env, args.repeat, NAME=tname)
            # timm picks its reader by file extension, so it gets the generated
            # model.safetensors (the same bytes as the cache entry) rather than the cache path.
            up = median("timm", env, args.repeat, ARCH=tarch, FILE=str(files[tname]))
            floor = median("floor_timm", env, args.repeat, ARCH=tarch, FILE=cached[tname])
            rows.append((tname, ours, up, floor))
            print(
                f"{tname + ' (pretrained=True)':<48}{ours:>9.3f}{up:>10.3f}{floor:>8.3f}"
                f"{ours / floor:>7.2f}x{up / ours:>8.1f}x",
                flush=True,
            )
            f = str(files[vname])
            ours = median("omnizoo_ckpt", env, args.repeat, NAME=vname, FILE=f)
            up = median("torchvision", env, args.repeat, ARCH=varch, FILE=f)
            floor = median("floor_torchvision", env, args.repeat, ARCH=varch, FILE=f)
            rows.append((vname, ours, up, floor))
            print(
                f"{vname + ' (checkpoint_path)':<48}{ours:>9.3f}{up:>10.3f}{floor:>8.3f}"
                f"{ours / floor:>7.2f}x{up / ours:>8.1f}x",
                flush=True,
            )
    if args.meta:
        print(f"{'device=meta':<48}{'omnizoo':>9}{'upstream':>10}{'ratio':>8}")
        for label in models:
            for name, arch, kind in MODELS[label]:
                ours = median("omnizoo_meta", env, args.repeat, NAME=name)
                up = median(f"{kind}_meta", env, args.repeat, ARCH=arch)
                rows.append((name + " (meta)", ours, up, None))
                print(f"{name:<48}{ours:>9.3f}{up:>10.3f}{ours / up:>7.2f}x", flush=True)
    code = (
        "import sys, time; t = time.perf_counter(); import omnizoo; "
        "n = len(omnizoo.list_models()); c = omnizoo.get_card('resnet50'); "
        "dt = time.perf_counter() - t; "
        "print(dt, n, [m for m in ('torch', 'timm', 'torchvision') if m in sys.modules])"
    )
    times = []
    for _ in range(max(3, args.repeat)):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout.split(maxsplit=2)
        times.append(float(out[0]))
    print(
        f"import omnizoo + list_models() ({out[1]} names) + get_card(): "
        f"{statistics.median(times):.3f} s (median), heavy modules imported: {out[2].strip()}"
    )
    print_overhead(oh := overhead(names, env, max(3, args.repeat)))
    rows.extend((r.name + " (overhead ms)", r.inside_ms, r.cpu_ms, None) for r in oh)
    if args.importtime:
        importtime(names[0], env)
    print(f"# end: {load_average()}", flush=True)
    print(json.dumps({"rows": rows}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
