"""Derive the ONNX zoo's published accuracies (package data) from the zoo's READMEs.

    python scripts/derive_onnx_metrics.py scripts/inputs/onnx-models-b1eeaa1a \
        -o src/omnizoo/data/onnx_zoo_metrics.json

Each classification README of github.com/onnx/models has a table per model family whose rows
link the model file (``[97.8 MB](model/resnet50-v1-7.onnx)``) and give "Top-1 accuracy (%)"
and "Top-5 accuracy (%)" (ShuffleNet-v2: "Top-1 error" and "Top-5 error", converted as
100 - error). The output maps each file's ``model_path`` (as the hub manifest spells it) to its
figures and the README row they come from, with the commit and the sha256 of every README read.
``tests/test_metrics_data.py`` re-derives it and compares.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

_LINK = re.compile(r"\]\((model/[^)\s]+\.onnx)\)")
_COLUMNS = {
    "top-1 accuracy (%)": ("top1", False),
    "top-5 accuracy (%)": ("top5", False),
    "top-1 error": ("top1", True),
    "top-5 error": ("top5", True),
}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _commit(folder: Path) -> str:
    found = re.search(r"\b([0-9a-f]{40})\b", (folder / "SOURCE.md").read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit(f"{folder / 'SOURCE.md'} names no commit")
    return found.group(1)


def parse_readme(text: str, directory: str) -> dict[str, dict[str, Any]]:
    """model_path -> {"top1", "top5", "row"} for every table row of one README that links a
    model file and gives a figure (HTML comments are skipped)."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    out: dict[str, dict[str, Any]] = {}
    header: list[str] = []
    for line in text.splitlines():
        if "|" not in line:
            header = []
            continue
        cells = _cells(line)
        if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
            continue
        link = next((m.group(1) for c in cells if (m := _LINK.search(c))), None)
        if link is None:
            header = [c.lower() for c in cells]
            continue
        figures: dict[str, Any] = {}
        for i, head in enumerate(header):
            spec = _COLUMNS.get(head)
            if spec is None or i >= len(cells) or not cells[i]:
                continue
            key, is_error = spec
            value = float(cells[i])
            figures[key] = round(100.0 - value, 3) if is_error else value
        if figures:
            figures["row"] = cells[0]
            out[f"{directory}/{link}"] = figures
    return out


def derive(folder: Path) -> dict[str, Any]:
    readmes = sorted(folder.glob("validated/vision/classification/**/README.md"))
    metrics: dict[str, dict[str, Any]] = {}
    inputs: dict[str, str] = {}
    for path in readmes:
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        inputs[rel] = hashlib.sha256(data).hexdigest()
        found = parse_readme(data.decode("utf-8"), rel.rsplit("/", 1)[0])
        for model_path, figures in found.items():
            metrics[model_path] = {**figures, "readme": rel}
    return {
        "format": 1,
        "provenance": {
            "repository": "https://github.com/onnx/models",
            "commit": _commit(folder),
            "license": "Apache-2.0",
            "generated_by": "scripts/derive_onnx_metrics.py",
            "inputs": inputs,
        },
        "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a copy of the READMEs, with SOURCE.md")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("src/omnizoo/data/onnx_zoo_metrics.json")
    )
    args = parser.parse_args(argv)
    data = derive(args.folder)
    args.output.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.output}: {len(data['metrics'])} model files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
