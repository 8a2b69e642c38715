"""Derive omnizoo's compact timm metrics (package data) from timm's published result tables.

    python scripts/derive_timm_results.py ../shared/reference/timm_results \
        -o src/omnizoo/data/timm_results.json.gz

The input is the ``results/`` folder of huggingface/pytorch-image-models at one commit (named
in its SOURCE.md): ImageNet-1k top-1/top-5 per ``arch.tag`` and image size, the robustness
sets, and the inference benchmarks that carry GMACs and parameter counts per ``arch`` and
image size. Nothing is typed by hand: every number comes from those CSV files, and the output
records the commit and the sha256 of every input file. ``tests/test_metrics_data.py``
re-derives it from the reference folder and compares.

The output is read by ``omnizoo.sources.timm.results`` when timm's cards are built.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

IMAGENET = "results-imagenet.csv"
#: robustness set key (as it appears in card.extra_metrics) -> results file
ROBUSTNESS = {
    "imagenet-real": "results-imagenet-real.csv",
    "imagenetv2": "results-imagenetv2-matched-frequency.csv",
    "imagenet-sketch": "results-sketch.csv",
    "imagenet-a": "results-imagenet-a.csv",
    "imagenet-r": "results-imagenet-r.csv",
}
#: benchmark tables, in order of preference (see docs/models/README.md: the GPU run measured
#: re-parameterised, BN-fused models, so the CPU run describes the models as built)
BENCHMARKS = {
    "cpu": "benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv",
    "gpu": "benchmark-infer-amp-nchw-pt291-cu130-5090.csv",
}
COLUMNS = ["img_size", "top1", "top5", "param_count", "crop_pct", "interpolation"]


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_commit(folder: Path) -> str:
    """The pytorch-image-models commit named in the folder's SOURCE.md."""
    text = (folder / "SOURCE.md").read_text(encoding="utf-8")
    found = re.search(r"\bcommit\s+([0-9a-f]{40})\b", text)
    if found is None:
        raise SystemExit(f"{folder / 'SOURCE.md'} names no 40-hex commit")
    return found.group(1)


def derive(folder: Path) -> dict[str, Any]:
    """The compact, JSON-ready metrics of the tables in ``folder``."""
    inputs = [IMAGENET, *ROBUSTNESS.values(), *BENCHMARKS.values(), "SOURCE.md"]
    imagenet: dict[str, list[list[Any]]] = {}
    for r in _rows(folder / IMAGENET):
        imagenet.setdefault(r["model"], []).append(
            [
                int(r["img_size"]),
                _number(r["top1"]),
                _number(r["top5"]),
                _number(r["param_count"]),
                _number(r["crop_pct"]),
                r["interpolation"],
            ]
        )
    robustness: dict[str, dict[str, list[list[Any]]]] = {}
    for key, name in ROBUSTNESS.items():
        table: dict[str, list[list[Any]]] = {}
        for r in _rows(folder / name):
            table.setdefault(r["model"], []).append(
                [int(r["img_size"]), _number(r["top1"]), _number(r["top5"])]
            )
        robustness[key] = table
    benchmarks: dict[str, dict[str, Any]] = {}
    params: dict[str, dict[tuple[str, int], float]] = {}
    for key, name in BENCHMARKS.items():
        rows: dict[str, list[list[Any]]] = {}
        params[key] = {}
        for r in _rows(folder / name):
            size = int(r["infer_img_size"])
            gmacs, count = _number(r["infer_gmacs"]), _number(r["param_count"])
            rows.setdefault(r["model"], []).append([size, gmacs, count])
            params[key][(r["model"], size)] = count
        benchmarks[key] = {"file": name, "rows": rows}
    # archs whose parameter count differs between the two benchmark runs (re-parameterised or
    # changed models): the GPU table's rows of their timm modules are not used for the cards
    cpu = params["cpu"]
    disagree = sorted({a for (a, size), n in params["gpu"].items() if cpu.get((a, size), n) != n})
    return {
        "format": 1,
        "provenance": {
            "repository": "https://github.com/huggingface/pytorch-image-models",
            "commit": source_commit(folder),
            "folder": "results/",
            "license": "Apache-2.0",
            "generated_by": "scripts/derive_timm_results.py",
            "inputs": {name: _sha256(folder / name) for name in inputs},
        },
        "columns": COLUMNS,
        "imagenet": imagenet,
        "robustness": robustness,
        "benchmarks": benchmarks,
        "param_count_differs": disagree,
    }


def encode(data: dict[str, Any]) -> bytes:
    """Deterministic gzip of the compact JSON (no timestamp, no file name)."""
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return gzip.compress(raw, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="timm's results/ folder (with SOURCE.md)")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("src/omnizoo/data/timm_results.json.gz")
    )
    args = parser.parse_args(argv)
    data = derive(args.folder)
    args.output.write_bytes(encode(data))
    print(
        f"{args.output}: {len(data['imagenet'])} tags, "
        f"{sum(len(v['rows']) for v in data['benchmarks'].values())} benchmarked archs, "
        f"{args.output.stat().st_size} bytes",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
